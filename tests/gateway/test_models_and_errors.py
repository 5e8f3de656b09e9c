"""`GET /v1/models` in OpenAI's format, and every error under `/v1` in OpenAI's shape — checked with
the `openai` SDK's own error classes and with raw HTTP — while `/api` keeps its envelope."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import openai
import pytest
from tests.fixtures.accounts import TestUser, create_api_key
from tests.fixtures.apps import running_app
from tests.fixtures.catalogs import ANTHROPIC_MODEL, OFFLINE_MODEL, OPENAI_MODEL
from tests.fixtures.gateway import sdk
from tests.fixtures.settings import make_settings

HEX32 = re.compile(r"^[0-9a-f]{32}$")
CHAT = "/v1/chat/completions"
HELLO = {"model": OFFLINE_MODEL, "messages": [{"role": "user", "content": "hi"}]}


def openai_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """The error object of an OpenAI-shaped error response (and nothing else in the body)."""
    assert response.status_code == status, response.text
    assert HEX32.match(response.headers["x-trace-id"])
    body = response.json()
    assert list(body) == ["error"]
    error: dict[str, Any] = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert isinstance(error["message"], str)
    assert error["message"]
    return error


# -- models --------------------------------------------------------------------------------


async def test_list_models(oai: openai.AsyncOpenAI) -> None:
    page = await oai.models.list()
    ids = [model.id for model in page.data]
    assert {OFFLINE_MODEL, OPENAI_MODEL, ANTHROPIC_MODEL} <= set(ids)
    for model in page.data:
        assert model.object == "model"
        assert model.owned_by == model.id.partition(":")[0]
        assert isinstance(model.created, int)


async def test_list_models_raw_format(raw: httpx.AsyncClient, api_key: str) -> None:
    response = await raw.get("/v1/models", headers={"Authorization": f"Bearer {api_key}"})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list"
    assert set(body) == {"object", "data"}  # no envelope
    assert set(body["data"][0]) == {"id", "object", "created", "owned_by"}
    assert HEX32.match(response.headers["x-trace-id"])


async def test_retrieve_a_model_whose_id_holds_a_colon(oai: openai.AsyncOpenAI) -> None:
    model = await oai.models.retrieve(OPENAI_MODEL)
    assert model.id == OPENAI_MODEL
    assert model.owned_by == "openai"


async def test_retrieve_an_unknown_model_is_a_404(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await oai.models.retrieve("openai:gpt-nonexistent")
    assert caught.value.code == "model_not_found"


async def test_disabled_models_are_neither_listed_nor_usable(
    oai: openai.AsyncOpenAI, client: httpx.AsyncClient, admin: TestUser
) -> None:
    response = await client.patch(
        f"/api/admin/models/{ANTHROPIC_MODEL}", json={"enabled": False}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    ids = [model.id async for model in oai.models.list()]
    assert ANTHROPIC_MODEL not in ids
    with pytest.raises(openai.NotFoundError):
        await oai.chat.completions.create(
            model=ANTHROPIC_MODEL, messages=[{"role": "user", "content": "hi"}]
        )


# -- errors through the SDK -----------------------------------------------------------------


async def test_unknown_model_is_model_not_found(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await oai.chat.completions.create(
            model="openai:gpt-nope", messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"
    assert caught.value.type == "invalid_request_error"


async def test_bad_key_is_an_authentication_error(gateway_live: Any, fakes: Any) -> None:
    client = sdk(f"{gateway_live.url}/v1", "pk_not-a-real-key")
    try:
        with pytest.raises(openai.AuthenticationError) as caught:
            await client.chat.completions.create(
                model=OFFLINE_MODEL, messages=[{"role": "user", "content": "hi"}]
            )
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()
    finally:
        await client.close()
    assert caught.value.code == "invalid_api_key"
    assert caught.value.response.headers["www-authenticate"] == "Bearer"


async def test_revoked_key_stops_working(
    gateway_live: Any, fakes: Any, client: httpx.AsyncClient, user: TestUser
) -> None:
    key = await create_api_key(client, user, "short-lived")
    oai = sdk(f"{gateway_live.url}/v1", key)
    try:
        await oai.models.list()
        keys = (await client.get("/api/users/me/api-keys", headers=user.headers)).json()
        [listed] = keys["data"]["items"]
        deleted = await client.delete(
            f"/api/users/me/api-keys/{listed['id']}", headers=user.headers
        )
        assert deleted.status_code == 204
        with pytest.raises(openai.AuthenticationError):
            await oai.models.list()
    finally:
        await oai.close()


async def test_invalid_argument_names_the_param(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.chat.completions.create(
            model=OFFLINE_MODEL, messages=[{"role": "user", "content": "hi"}], temperature=5
        )
    assert caught.value.param == "temperature"
    assert caught.value.type == "invalid_request_error"


# -- errors over raw HTTP -------------------------------------------------------------------


async def test_missing_key_is_a_401_in_openai_shape(raw: httpx.AsyncClient) -> None:
    response = await raw.post(CHAT, json=HELLO)
    error = openai_error(response, 401)
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "invalid_api_key"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_bad_key_is_a_401_in_openai_shape(raw: httpx.AsyncClient) -> None:
    response = await raw.get("/v1/models", headers={"Authorization": "Bearer pk_wrong"})
    error = openai_error(response, 401)
    assert error["code"] == "invalid_api_key"


async def test_unknown_model_is_a_404_in_openai_shape(raw: httpx.AsyncClient, api_key: str) -> None:
    response = await raw.post(
        CHAT, json={**HELLO, "model": "gemini:nope"}, headers={"Authorization": f"Bearer {api_key}"}
    )
    error = openai_error(response, 404)
    assert error == {
        "message": "The model `gemini:nope` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"model": OFFLINE_MODEL}, "messages", "missing_required_parameter"),
        ({"messages": [{"role": "user", "content": "x"}]}, "model", "missing_required_parameter"),
        ({**HELLO, "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role", None),
        ({**HELLO, "messages": [{"role": "user", "content": 5}]}, "messages[0].content", None),
        ({**HELLO, "max_tokens": 0}, "max_tokens", "invalid_value"),
        ({**HELLO, "stop": ["a", "b", "c", "d", "e"]}, None, None),
    ],
)
async def test_validation_errors_are_400s_naming_the_param(
    raw: httpx.AsyncClient,
    api_key: str,
    body: dict[str, Any],
    param: str | None,
    code: str | None,
) -> None:
    response = await raw.post(CHAT, json=body, headers={"Authorization": f"Bearer {api_key}"})
    error = openai_error(response, 400)
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param
    if code is not None:
        assert error["code"] == code


async def test_unknown_argument_is_refused_like_openai(
    raw: httpx.AsyncClient, api_key: str
) -> None:
    response = await raw.post(
        CHAT, json={**HELLO, "api_base": "http://x"}, headers={"Authorization": f"Bearer {api_key}"}
    )
    error = openai_error(response, 400)
    assert error["message"] == "Unrecognized request argument supplied: api_base"


async def test_malformed_json_is_a_400(raw: httpx.AsyncClient, api_key: str) -> None:
    response = await raw.post(
        CHAT,
        content=b'{"model": ',
        headers={"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"},
    )
    error = openai_error(response, 400)
    assert "parse the JSON body" in error["message"]


async def test_unknown_path_under_v1_is_a_404_in_openai_shape(raw: httpx.AsyncClient) -> None:
    response = await raw.post("/v1/audio/speech", json={})
    error = openai_error(response, 404)
    assert error["message"] == "Invalid URL (POST /v1/audio/speech)"
    assert error["type"] == "invalid_request_error"


async def test_wrong_method_is_a_405_in_openai_shape(raw: httpx.AsyncClient) -> None:
    response = await raw.get(CHAT)
    error = openai_error(response, 405)
    assert error["message"] == "Invalid URL (GET /v1/chat/completions)"


async def test_api_errors_keep_the_envelope(raw: httpx.AsyncClient) -> None:
    response = await raw.get("/api/no-such-route")
    assert response.status_code == 404
    body = response.json()
    assert body["error"]["code"] == "not_found"
    assert body["trace_id"] == response.headers["x-trace-id"]


async def test_body_over_the_limit_is_a_413_in_openai_shape(
    database_url: str, tmp_path: Path, client: httpx.AsyncClient, user: TestUser
) -> None:
    key = await create_api_key(client, user)
    settings = make_settings(database_url, tmp_path, max_body_bytes=2048)
    long_message = {**HELLO, "messages": [{"role": "user", "content": "x" * 8192}]}
    async with running_app(settings) as (_, http):
        declared = await http.post(
            CHAT, json=long_message, headers={"Authorization": f"Bearer {key}"}
        )

        async def chunked() -> Any:
            for _ in range(64):
                yield b"x" * 256

        streamed = await http.post(
            CHAT,
            content=chunked(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        enveloped = await http.post("/api/auth/login", json={"email": "a" * 8192, "password": "x"})
    for response in (declared, streamed):
        error = openai_error(response, 413)
        assert error["type"] == "invalid_request_error"
    assert enveloped.status_code == 413
    assert enveloped.json()["error"]["code"] == "payload_too_large"


async def test_unhandled_error_under_v1_is_a_500_in_openai_shape(
    database_url: str, tmp_path: Path
) -> None:
    async def explode() -> None:
        raise RuntimeError("SELECT secret FROM keys")

    async with running_app(make_settings(database_url, tmp_path)) as (application, http):
        application.add_api_route("/v1/test-explode", explode, methods=["GET"])
        response = await http.get("/v1/test-explode")
    error = openai_error(response, 500)
    assert error["type"] == "server_error"
    assert "SELECT" not in response.text


@pytest.mark.parametrize("model", ["offline:\u0000parley", "x" * 300])
async def test_impossible_model_ids_are_unknown_models(
    raw: httpx.AsyncClient, api_key: str, model: str
) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    chat = await raw.post(CHAT, json={**HELLO, "model": model}, headers=headers)
    assert chat.status_code in (400, 404)  # too long is a validation error
    openai_error(chat, chat.status_code)
    retrieved = await raw.get(f"/v1/models/{quote(model)}", headers=headers)
    assert openai_error(retrieved, 404)["code"] == "model_not_found"


async def test_tool_call_arguments_must_be_json_for_translated_models(
    oai: openai.AsyncOpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.chat.completions.create(
            model=OFFLINE_MODEL,
            messages=[
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "add_task", "arguments": "{not json"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "{}"},
            ],
        )
    assert caught.value.param == "messages[1].tool_calls[0].function.arguments"
