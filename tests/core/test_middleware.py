"""The middleware: the request body limit (with `Content-Length`, chunked, and on the wire), the
security headers, CORS (off by default, allowlisted origins only) and `X-Request-Id`."""

from __future__ import annotations

import json
import re
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.fixtures.apps import running_app
from tests.fixtures.servers import start_live_server, stop_live_server
from tests.fixtures.settings import make_settings

LIMIT = 2048
CHUNK = 1024
CHUNKS = 64
HEX32 = re.compile(r"^[0-9a-f]{32}$")


class CountingBody:
    """An async request body of `CHUNKS` chunks that counts how many were pulled."""

    def __init__(self) -> None:
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(CHUNKS):
            self.pulled += 1
            yield b"x" * CHUNK


def assert_payload_too_large(status: int, body: bytes, trace_id: str | None) -> None:
    assert status == 413
    envelope = json.loads(body)
    assert envelope["error"]["code"] == "payload_too_large"
    assert trace_id is not None
    assert HEX32.match(trace_id)
    assert envelope["trace_id"] == trace_id


# -- body limit over ASGI -------------------------------------------------------------------


async def test_declared_length_over_the_limit_is_refused_before_reading(
    database_url: str, tmp_path: Path
) -> None:
    body = CountingBody()
    async with running_app(make_settings(database_url, tmp_path, max_body_bytes=LIMIT)) as apps:
        _, http = apps
        response = await http.post(
            "/api/auth/login",
            content=body,
            headers={"Content-Length": str(CHUNK * CHUNKS), "Content-Type": "application/json"},
        )
    assert_payload_too_large(response.status_code, response.content, response.headers["x-trace-id"])
    assert body.pulled == 0


async def test_chunked_body_over_the_limit_is_refused_as_it_arrives(
    database_url: str, tmp_path: Path
) -> None:
    body = CountingBody()
    async with running_app(make_settings(database_url, tmp_path, max_body_bytes=LIMIT)) as apps:
        _, http = apps
        response = await http.post(
            "/api/auth/login", content=body, headers={"Content-Type": "application/json"}
        )
    assert "content-length" not in response.request.headers
    assert_payload_too_large(response.status_code, response.content, response.headers["x-trace-id"])
    # Refused as soon as the count passed the limit, not after reading the whole body.
    assert body.pulled <= LIMIT // CHUNK + 1
    assert body.pulled < CHUNKS, body.pulled


async def test_body_under_the_limit_passes(database_url: str, tmp_path: Path) -> None:
    async with running_app(make_settings(database_url, tmp_path, max_body_bytes=LIMIT)) as apps:
        _, http = apps
        response = await http.post(
            "/api/auth/login", json={"email": "nobody@example.com", "password": "x" * 1000}
        )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_credentials"


# -- body limit on the wire -----------------------------------------------------------------


def _read_http_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed in the middle of the body"
        rest += chunk
    return int(status_line.split()[1]), headers, rest[:length]


@pytest.fixture
def small_limit_server(database_url: str, tmp_path: Path) -> Iterator[tuple[str, int]]:
    live = start_live_server(make_settings(database_url, tmp_path, max_body_bytes=LIMIT))
    try:
        address = urlsplit(live.url)
        yield address.hostname or "127.0.0.1", address.port or 80
    finally:
        stop_live_server(live)


def test_raw_chunked_upload_is_refused_on_the_wire(small_limit_server: tuple[str, int]) -> None:
    host, port = small_limit_server
    with socket.create_connection((host, port), timeout=15) as sock:
        sock.sendall(
            b"POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        # Twice the limit, and never the terminating zero-size chunk: a server that waited for
        # the whole body would never answer (the socket timeout would fail the test).
        for _ in range(2 * LIMIT // CHUNK):
            sock.sendall(f"{CHUNK:x}\r\n".encode() + b"x" * CHUNK + b"\r\n")
        status, headers, body = _read_http_response(sock)
    assert_payload_too_large(status, body, headers.get("x-trace-id"))


def test_raw_declared_length_is_refused_without_sending_the_body(
    small_limit_server: tuple[str, int],
) -> None:
    host, port = small_limit_server
    with socket.create_connection((host, port), timeout=15) as sock:
        sock.sendall(
            b"POST /api/auth/login HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nContent-Length: 104857600\r\n\r\n"
        )
        status, headers, body = _read_http_response(sock)
    assert_payload_too_large(status, body, headers.get("x-trace-id"))
    assert headers.get("connection") == "close"


# -- security headers -----------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/users/me", "/api/no-such-route", "/health/live"])
async def test_api_responses_carry_security_headers(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert "strict-transport-security" not in response.headers


async def test_docs_page_keeps_headers_and_its_own_csp(client: httpx.AsyncClient) -> None:
    response = await client.get("/docs")
    assert response.status_code == 200
    assert response.headers["x-content-type-options"] == "nosniff"
    # Swagger UI loads this origin's scripts, which the API's CSP would refuse (tests/web/
    # test_api_docs.py holds the page's own to the rest).
    [csp] = response.headers.get_list("content-security-policy")
    assert "script-src 'self'" in csp


async def test_a_page_keeps_its_own_csp_and_gets_the_rest(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 200
    [csp] = response.headers.get_list("content-security-policy")
    assert "default-src 'none'" not in csp  # the page's own, which lets its script run
    assert "script-src" in csp
    assert response.headers.get_list("x-frame-options") == ["DENY"]
    assert response.headers.get_list("x-trace-id") == [response.headers["x-trace-id"]]


async def test_production_adds_hsts(database_url: str, tmp_path: Path) -> None:
    production = make_settings(database_url, tmp_path, environment="production")
    async with running_app(production) as (_, http):
        response = await http.get("/health/live")
    assert response.headers["strict-transport-security"].startswith("max-age=")


# -- CORS -----------------------------------------------------------------------------------

ALLOWED = "https://app.example"
PREFLIGHT = {
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "authorization",
}


async def test_no_cors_by_default(client: httpx.AsyncClient) -> None:
    preflight = await client.options("/api/auth/login", headers={"Origin": ALLOWED, **PREFLIGHT})
    assert "access-control-allow-origin" not in preflight.headers
    simple = await client.get("/health/live", headers={"Origin": ALLOWED})
    assert simple.status_code == 200
    assert "access-control-allow-origin" not in simple.headers


async def test_allowlisted_origin_gets_cors(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, cors_origins=f"{ALLOWED}, https://b.example")
    assert settings.cors_origins == [ALLOWED, "https://b.example"]
    async with running_app(settings) as (_, http):
        preflight = await http.options("/api/auth/login", headers={"Origin": ALLOWED, **PREFLIGHT})
        simple = await http.post(
            "/api/auth/login",
            json={"email": "nobody@example.com", "password": "whatever"},
            headers={"Origin": ALLOWED},
        )
        other = await http.options(
            "/api/auth/login", headers={"Origin": "https://evil.example", **PREFLIGHT}
        )
        other_simple = await http.get("/health/live", headers={"Origin": "https://evil.example"})

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ALLOWED
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert HEX32.match(preflight.headers["x-trace-id"])

    assert simple.status_code == 401
    assert simple.headers["access-control-allow-origin"] == ALLOWED
    exposed = simple.headers["access-control-expose-headers"].lower()
    assert "x-trace-id" in exposed
    assert "retry-after" in exposed

    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    assert "access-control-allow-origin" not in other_simple.headers


@pytest.mark.parametrize(
    ("origin", "preflight", "code", "fields"),
    [
        (
            "https://evil.example",
            PREFLIGHT,
            "cors_origin_not_allowed",
            ["header.origin"],
        ),
        (
            "https://evil.example",
            {"Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "x-evil"},
            "cors_origin_not_allowed",
            [
                "header.origin",
                "header.access-control-request-method",
                "header.access-control-request-headers",
            ],
        ),
        (
            ALLOWED,
            {"Access-Control-Request-Method": "PUT"},
            "cors_method_not_allowed",
            ["header.access-control-request-method"],
        ),
        (
            ALLOWED,
            {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-evil"},
            "cors_headers_not_allowed",
            ["header.access-control-request-headers"],
        ),
    ],
)
async def test_a_refused_preflight_is_an_error_in_the_envelope(
    database_url: str,
    tmp_path: Path,
    origin: str,
    preflight: dict[str, str],
    code: str,
    fields: list[str],
) -> None:
    settings = make_settings(database_url, tmp_path, cors_origins=ALLOWED)
    async with running_app(settings) as (_, http):
        response = await http.options("/api/auth/login", headers={"Origin": origin, **preflight})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"trace_id", "error"}
    assert HEX32.match(body["trace_id"])
    assert body["trace_id"] == response.headers["x-trace-id"]
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert [detail["field"] for detail in body["error"]["details"]] == fields
    # As strict as before: a refused origin is never allowed, an allowed one is still named.
    if origin == ALLOWED:
        assert response.headers["access-control-allow-origin"] == ALLOWED
    else:
        assert "access-control-allow-origin" not in response.headers
    assert "Origin" in response.headers["vary"]


async def test_a_refused_preflight_on_v1_is_an_openai_error(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url, tmp_path, cors_origins=ALLOWED)
    async with running_app(settings) as (_, http):
        response = await http.options(
            "/v1/chat/completions", headers={"Origin": "https://evil.example", **PREFLIGHT}
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "cors_origin_not_allowed"
    assert "access-control-allow-origin" not in response.headers
    assert HEX32.match(response.headers["x-trace-id"])


# -- X-Request-Id ---------------------------------------------------------------------------


async def test_valid_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live", headers={"X-Request-Id": "req-42_a.B"})
    assert response.headers["x-request-id"] == "req-42_a.B"


@pytest.mark.parametrize("incoming", ["has spaces", "semi;colon", "<script>", "x" * 129, "ünïcode"])
async def test_invalid_request_id_is_replaced(client: httpx.AsyncClient, incoming: str) -> None:
    response = await client.get(
        "/health/live", headers=[(b"X-Request-Id", incoming.encode("utf-8"))]
    )
    assert response.status_code == 200
    assert HEX32.match(response.headers["x-request-id"])


async def test_request_id_is_generated_when_absent(client: httpx.AsyncClient) -> None:
    first = await client.get("/api/no-such-route")
    second = await client.get("/api/no-such-route")
    assert HEX32.match(first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
