"""The REST envelope and the error tree (CONTRACT.md section 2), and `X-Trace-Id` on every surface
(section 1): Parley's own errors, the framework's 404/405/422, malformed JSON and unhandled
exceptions all come back as `{"trace_id", "error": {"code", "message", "details?"}}`."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import httpx
import pytest

from parley.settings import Settings
from tests.fixtures.apps import running_app

TRACE_ID = re.compile(r"^[0-9a-f]{32}$")


def assert_trace_id(response: httpx.Response) -> str:
    """The response's `X-Trace-Id`, checked to be a real (non-zero) 32-hex trace id."""
    trace_id = response.headers.get("x-trace-id", "")
    assert TRACE_ID.match(trace_id), f"bad X-Trace-Id {trace_id!r} on {response.request.url}"
    assert trace_id != "0" * 32
    return trace_id


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The error envelope of `response`, checked against CONTRACT.md section 2."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"trace_id", "error"}
    assert body["trace_id"] == assert_trace_id(response)
    error = body["error"]
    assert set(error) <= {"code", "message", "details"}
    assert error["code"] == code
    assert isinstance(error["message"], str)
    assert error["message"]
    return dict(error)


async def test_success_envelope_carries_data_and_the_trace_id(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/register",
        json={"email": f"env-{uuid.uuid4().hex[:8]}@example.com", "password": "long enough pw"},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == {"trace_id", "data"}
    assert body["trace_id"] == assert_trace_id(response)
    assert "user" in body["data"]


async def test_unknown_api_path_is_an_enveloped_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/no/such/thing")
    error = assert_error(response, 404, "not_found")
    assert "details" not in error


async def test_wrong_method_is_an_enveloped_405_with_allow(client: httpx.AsyncClient) -> None:
    response = await client.delete("/api/auth/login")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["allow"]


async def test_missing_credentials_are_an_enveloped_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/users/me")
    assert_error(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == "Bearer"


async def test_validation_error_lists_fields_and_never_echoes_input(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/auth/register", json={"email": "not-an-email", "password": "Zq9"}
    )
    error = assert_error(response, 422, "validation_error")
    details = error["details"]
    assert isinstance(details, list)
    for item in details:
        assert set(item) == {"field", "message"}
        assert isinstance(item["message"], str)
    fields = {item["field"] for item in details}
    assert fields == {"body.email", "body.password"}
    assert "Zq9" not in response.text


async def test_missing_field_is_named_with_its_location(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/auth/register", json={"email": "someone@example.com"})
    error = assert_error(response, 422, "validation_error")
    assert [item["field"] for item in error["details"]] == ["body.password"]


async def test_malformed_json_is_a_validation_error(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/login",
        content=b'{"email": "a@example.com", "password": ',
        headers={"Content-Type": "application/json"},
    )
    error = assert_error(response, 422, "validation_error")
    assert error["details"]
    assert all(item["field"].startswith("body") for item in error["details"])


async def test_unhandled_exception_is_a_bare_500_with_the_trace_id(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    leaked = "SELECT password_hash FROM users WHERE email = 'victim@example.com'"

    async def explode() -> None:
        raise RuntimeError(leaked)

    async with running_app(settings) as (application, http):
        application.add_api_route("/api/test-explode", explode, methods=["GET"])
        with caplog.at_level(logging.ERROR, logger="parley.request"):
            response = await http.get("/api/test-explode")

    error = assert_error(response, 500, "internal_error")
    assert "details" not in error
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    for secret in ("SELECT", "password_hash", "victim", "Traceback", "RuntimeError"):
        assert secret not in response.text
    # The operator still gets the whole story, under the same trace id, in the logs.
    logged = [record for record in caplog.records if record.exc_info]
    assert logged, "the unhandled error was not logged with its traceback"
    assert logged[-1].exc_info is not None
    assert logged[-1].exc_info[0] is RuntimeError


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/health/live"),
        ("GET", "/health/ready"),
        ("GET", "/openapi.json"),
        ("GET", "/docs"),
        ("GET", "/"),
        ("GET", "/no-such-page"),
        ("GET", "/api/no-such-route"),
        ("GET", "/api/users/me"),
        ("DELETE", "/api/auth/login"),
        ("POST", "/api/auth/login"),
    ],
)
async def test_every_surface_answers_with_a_trace_id(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path)
    trace_id = assert_trace_id(response)
    if path.startswith("/api"):
        assert response.json()["trace_id"] == trace_id


async def test_each_request_gets_its_own_trace(client: httpx.AsyncClient) -> None:
    first = await client.get("/health/live")
    second = await client.get("/health/live")
    assert assert_trace_id(first) != assert_trace_id(second)


async def test_incoming_traceparent_is_honoured(client: httpx.AsyncClient) -> None:
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    response = await client.get("/api/users/me", headers={"traceparent": traceparent})
    assert response.status_code == 401
    assert response.headers["x-trace-id"] == trace_id
    assert response.json()["trace_id"] == trace_id

    health = await client.get("/health/live", headers={"traceparent": traceparent})
    assert health.headers["x-trace-id"] == trace_id


async def test_malformed_traceparent_starts_a_new_trace(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live", headers={"traceparent": "00-zz-not-a-trace-01"})
    assert response.status_code == 200
    assert_trace_id(response)
