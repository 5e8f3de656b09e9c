"""`POST /v1/embeddings` with the official `openai` SDK on a live server: the SDK's default base64
answers and `encoding_format="float"`, a string or a list, `dimensions`, usage records and their
cost (the offline embedder's and a provider's through a fake upstream), and bad input as a 4xx in
OpenAI's error format, never a 500."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from tests.fakes import Reply
from tests.fakes.embedding_upstreams import FakeOpenAIEmbeddings, fake_vector
from tests.fixtures.accounts import TestUser
from tests.fixtures.budgets import set_budget
from tests.fixtures.catalogs import OFFLINE_MODEL
from tests.fixtures.gateway import sdk, usage_records
from tests.fixtures.servers import (
    LiveServer,
    start_live_server_off_loop,
    stop_live_server_off_loop,
)
from tests.fixtures.settings import make_settings

from parley.gateway.schemas import (
    MAX_EMBEDDING_INPUT_CHARS,
    MAX_EMBEDDING_INPUTS,
    MAX_EMBEDDING_TOTAL_CHARS,
)

EMBED = "offline:embed"
PROVIDER_EMBED = "openai:text-embedding-fake"
EMBEDDINGS = "/v1/embeddings"
TOO_MANY_LONG = MAX_EMBEDDING_TOTAL_CHARS // MAX_EMBEDDING_INPUT_CHARS + 1


def _openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """The error object of an OpenAI-shaped error response, and nothing else in the body."""
    assert response.status_code == status, response.text
    body = response.json()
    assert list(body) == ["error"]
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    return error


def _norms(vectors: list[list[float]]) -> np.ndarray[Any, Any]:
    return np.linalg.norm(np.asarray(vectors, dtype=np.float64), axis=1)


async def _post(raw: httpx.AsyncClient, api_key: str, body: Any) -> httpx.Response:
    """The body as JSON with ASCII escapes (so that a lone surrogate can be sent as `\\ud800`)."""
    return await raw.post(
        EMBEDDINGS,
        content=json.dumps(body),
        headers={"Authorization": f"Bearer {api_key}", "content-type": "application/json"},
    )


# -- the offline embedder through the SDK -----------------------------------------------------


async def test_the_sdks_default_base64_answer(oai: openai.AsyncOpenAI) -> None:
    answer = await oai.embeddings.create(model=EMBED, input="The cat sat on the mat.")
    assert answer.object == "list"
    assert answer.model == EMBED
    [item] = answer.data
    assert item.object == "embedding"
    assert item.index == 0
    assert len(item.embedding) == 384
    assert _norms([item.embedding])[0] == pytest.approx(1.0, abs=1e-5)
    assert answer.usage.prompt_tokens > 0
    assert answer.usage.total_tokens == answer.usage.prompt_tokens


async def test_base64_and_float_answers_are_the_same_vectors(
    oai: openai.AsyncOpenAI, raw: httpx.AsyncClient, api_key: str
) -> None:
    texts = ["first text", "second text", ""]
    floats = await oai.embeddings.create(model=EMBED, input=texts, encoding_format="float")
    assert [item.index for item in floats.data] == [0, 1, 2]
    response = await _post(
        raw, api_key, {"model": EMBED, "input": texts, "encoding_format": "base64"}
    )
    assert response.status_code == 200, response.text
    encoded = [item["embedding"] for item in response.json()["data"]]
    assert all(isinstance(value, str) for value in encoded)
    decoded = [np.frombuffer(base64.b64decode(value), dtype="<f4") for value in encoded]
    for item, vector in zip(floats.data, decoded, strict=True):
        assert np.array_equal(np.asarray(item.embedding, dtype=np.float32), vector)
    assert np.allclose(_norms([item.embedding for item in floats.data]), 1.0, atol=1e-5)


async def test_a_list_is_answered_in_order_and_like_single_strings(oai: openai.AsyncOpenAI) -> None:
    texts = ["apples and pears", "a train timetable", "apples and pears"]
    listed = await oai.embeddings.create(model=EMBED, input=texts, encoding_format="float")
    alone = await oai.embeddings.create(model=EMBED, input=texts[1], encoding_format="float")
    vectors = [item.embedding for item in listed.data]
    assert vectors[0] == vectors[2]
    assert np.allclose(vectors[1], alone.data[0].embedding, atol=1e-6)
    assert vectors[0] != vectors[1]


async def test_input_type_chooses_query_or_passage(raw: httpx.AsyncClient, api_key: str) -> None:
    answers = {}
    for input_type in (None, "query", "passage"):
        body: dict[str, Any] = {"model": EMBED, "input": "how tall is the eiffel tower"}
        if input_type:
            body["input_type"] = input_type
        response = await _post(raw, api_key, {**body, "encoding_format": "float"})
        assert response.status_code == 200, response.text
        answers[input_type] = response.json()["data"][0]["embedding"]
    assert answers[None] == answers["query"]  # queries unless told
    assert answers["query"] != answers["passage"]


async def test_dimensions_shortens_and_renormalises(oai: openai.AsyncOpenAI) -> None:
    text = "shorter vectors, please"
    full = await oai.embeddings.create(model=EMBED, input=text, encoding_format="float")
    short = await oai.embeddings.create(model=EMBED, input=text, dimensions=64)
    same = await oai.embeddings.create(model=EMBED, input=text, dimensions=384)
    head = np.asarray(full.data[0].embedding[:64])
    assert len(short.data[0].embedding) == 64
    assert np.allclose(short.data[0].embedding, head / np.linalg.norm(head), atol=1e-5)
    assert np.allclose(same.data[0].embedding, full.data[0].embedding, atol=1e-6)


async def test_each_call_is_a_usage_record_at_no_cost(
    oai: openai.AsyncOpenAI, client: httpx.AsyncClient, user: TestUser
) -> None:
    answer = await oai.embeddings.create(model=EMBED, input=["one", "two"])
    [record] = await usage_records(client, user, expected=1)
    assert record["model_id"] == EMBED
    assert record["status"] == "complete"
    assert record["input_tokens"] == answer.usage.prompt_tokens
    assert record["output_tokens"] == 0
    assert record["cost_usd"] == 0


async def test_embedding_models_are_retrievable_but_not_listed_with_the_chat_models(
    oai: openai.AsyncOpenAI,
) -> None:
    ids = [model.id async for model in oai.models.list()]
    assert OFFLINE_MODEL in ids
    assert EMBED not in ids
    model = await oai.models.retrieve(EMBED)
    assert (model.id, model.owned_by) == (EMBED, "offline")
    with pytest.raises(openai.NotFoundError) as caught:
        await oai.chat.completions.create(model=EMBED, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.code == "model_not_found"


# -- bad input: a 4xx in OpenAI's format ----------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": EMBED, "input": ["x"] * (MAX_EMBEDDING_INPUTS + 1)}, "input"),
        ({"model": EMBED, "input": "y" * (MAX_EMBEDDING_INPUT_CHARS + 1)}, "input[0]"),
        ({"model": EMBED, "input": ["fine", "z" * (MAX_EMBEDDING_INPUT_CHARS + 1)]}, "input[1]"),
        # Each within bounds, too many characters in all.
        ({"model": EMBED, "input": ["w" * MAX_EMBEDDING_INPUT_CHARS] * TOO_MANY_LONG}, "input"),
        ({"model": EMBED, "input": [1, 2, 3]}, "input"),
        ({"model": EMBED, "input": [[1, 2], [3]]}, "input"),
        ({"model": EMBED, "input": []}, "input"),
        ({"model": EMBED, "input": ["text", 3]}, "input"),
        ({"model": EMBED, "input": None}, "input"),
        ({"model": EMBED}, "input"),
        ({"model": EMBED, "input": "x", "dimensions": 385}, "dimensions"),
        ({"model": EMBED, "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": EMBED, "input": "x", "dimensions": 10**12}, "dimensions"),
        ({"model": EMBED, "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": EMBED, "input": "x", "input_type": "document"}, "input_type"),
        ({"model": "", "input": "x"}, "model"),
        ({"model": EMBED, "input": "\ud800"}, "input[0]"),
    ],
)
async def test_bad_input_is_a_400_in_openais_format(
    raw: httpx.AsyncClient, api_key: str, body: dict[str, Any], param: str
) -> None:
    error = _openai_error(await _post(raw, api_key, body), 400)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param, error


async def test_an_unknown_argument_is_refused(raw: httpx.AsyncClient, api_key: str) -> None:
    error = _openai_error(
        await _post(raw, api_key, {"model": EMBED, "input": "x", "base_url": "http://evil"}), 400
    )
    assert error["message"] == "Unrecognized request argument supplied: base_url"


async def test_token_arrays_through_the_sdk_are_a_bad_request(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.embeddings.create(model=EMBED, input=[[101, 2023, 102]])
    assert caught.value.param == "input"
    assert "Token arrays" in caught.value.message


@pytest.mark.parametrize("model", ["openai:text-embedding-nope", OFFLINE_MODEL, "x\x00y"])
async def test_an_unknown_or_chat_model_is_model_not_found(
    oai: openai.AsyncOpenAI, model: str
) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await oai.embeddings.create(model=model, input="hi")
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"


async def test_unauthenticated_is_a_401(raw: httpx.AsyncClient, gateway_live: LiveServer) -> None:
    anonymous = await raw.post(EMBEDDINGS, json={"model": EMBED, "input": "hi"})
    error = _openai_error(anonymous, 401)
    assert error["code"] == "invalid_api_key"
    assert anonymous.headers["www-authenticate"] == "Bearer"
    client = sdk(f"{gateway_live.url}/v1", "pk_not-a-real-key")
    try:
        with pytest.raises(openai.AuthenticationError):
            await client.embeddings.create(model=EMBED, input="hi")
    finally:
        await client.close()


async def test_a_spent_budget_is_a_402(
    oai: openai.AsyncOpenAI, client: httpx.AsyncClient, admin: TestUser, user: TestUser
) -> None:
    await set_budget(client, admin, user, Decimal(0))
    with pytest.raises(openai.APIStatusError) as caught:
        await oai.embeddings.create(model=EMBED, input="hi")
    assert caught.value.status_code == 402
    assert caught.value.code == "budget_exceeded"


# -- a provider's embedding model, through a fake upstream ----------------------------------

PRICED_MODELS_FILE = f"""
[[models]]
id = "{PROVIDER_EMBED}"
kind = "embedding"
input_price_per_mtok = 2.0
"""


@pytest.fixture(scope="module")
def embeddings_upstream() -> Iterator[FakeOpenAIEmbeddings]:
    fake = FakeOpenAIEmbeddings.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
async def provider_live(
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    embeddings_upstream: FakeOpenAIEmbeddings,
) -> AsyncIterator[LiveServer]:
    """A live Parley whose `EMBEDDING_MODEL` is a model of the fake upstream."""
    data_dir = tmp_path_factory.mktemp("embeddings")
    models_file = data_dir / "models.toml"
    models_file.write_text(PRICED_MODELS_FILE, encoding="utf-8")
    settings = make_settings(
        database_url,
        data_dir,
        openai_api_key="sk-embed",
        openai_base_url=embeddings_upstream.base_url,
        openai_models=["gpt-unused"],  # no model list to ask the fake for
        anthropic_api_key=None,
        gemini_api_key=None,
        models_file=models_file,
        embedding_model=PROVIDER_EMBED,
        provider_max_retries=0,
    )
    live = await start_live_server_off_loop(settings)
    try:
        yield live
    finally:
        await stop_live_server_off_loop(live)


@pytest.fixture
async def provider_sdk(
    provider_live: LiveServer, api_key: str, embeddings_upstream: FakeOpenAIEmbeddings
) -> AsyncIterator[openai.AsyncOpenAI]:
    embeddings_upstream.reset()
    client = sdk(f"{provider_live.url}/v1", api_key)
    try:
        yield client
    finally:
        await client.close()


async def test_a_providers_model_is_relayed_normalised_and_priced(
    provider_sdk: openai.AsyncOpenAI,
    embeddings_upstream: FakeOpenAIEmbeddings,
    client: httpx.AsyncClient,
    user: TestUser,
    tmp_path: Path,
) -> None:
    answer = await provider_sdk.embeddings.create(
        model=PROVIDER_EMBED, input=["alpha", "beta"], dimensions=4
    )
    [sent] = embeddings_upstream.script.requests
    assert sent.headers["authorization"] == "Bearer sk-embed"  # the operator's key
    assert sent.body == {
        "model": "text-embedding-fake",
        "input": ["alpha", "beta"],
        "encoding_format": "float",
    }
    for item, text in zip(answer.data, ("alpha", "beta"), strict=True):
        head = np.asarray(fake_vector(text, 8)[:4])
        assert np.allclose(item.embedding, head / np.linalg.norm(head), atol=1e-5)
    assert answer.usage.prompt_tokens == Reply().input_tokens
    [record] = await usage_records(client, user, expected=1)
    assert record["model_id"] == PROVIDER_EMBED
    assert record["input_tokens"] == Reply().input_tokens
    assert record["cost_usd"] == pytest.approx(Reply().input_tokens * 2.0 / 1_000_000)
    # The offline embedder is there beside it.
    offline = await provider_sdk.embeddings.create(model=EMBED, input="x")
    assert len(offline.data[0].embedding) == 384


@pytest.mark.parametrize(
    ("status", "error", "code"),
    [
        (401, openai.InternalServerError, "provider_error"),
        (429, openai.InternalServerError, "provider_unavailable"),
        (500, openai.InternalServerError, "provider_error"),
        (400, openai.BadRequestError, None),
    ],
)
async def test_provider_failures_are_openai_errors_and_cost_nothing(
    provider_sdk: openai.AsyncOpenAI,
    embeddings_upstream: FakeOpenAIEmbeddings,
    client: httpx.AsyncClient,
    user: TestUser,
    status: int,
    error: type[openai.APIStatusError],
    code: str | None,
) -> None:
    embeddings_upstream.script.push(Reply(status=status, error_message="scripted failure"))
    with pytest.raises(error) as caught:
        await provider_sdk.embeddings.create(model=PROVIDER_EMBED, input="x")
    assert caught.value.code == code
    assert "sk-embed" not in caught.value.message
    [record] = await usage_records(client, user, expected=1)
    assert record["status"] == "error"
    assert (record["input_tokens"], record["cost_usd"]) == (0, 0)


async def test_dimensions_beyond_a_learnt_dimension_is_a_400(
    provider_sdk: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await provider_sdk.embeddings.create(model=PROVIDER_EMBED, input="x", dimensions=9)
    assert caught.value.param == "dimensions"
