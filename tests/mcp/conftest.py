"""Fixtures for the MCP tests: the live server's `/mcp` URL (stateless, the default) and that of a
server keeping sessions (`MCP_STATELESS=false`), API keys, an official `mcp` SDK client connected
as a user, and raw JSON-RPC over HTTP for what the SDK client does not let a test do."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

from tests.conftest import (
    LiveServer,
    TestUser,
    make_settings,
    start_live_server,
    stop_live_server,
)

HANDSHAKE_VERSION = "2025-11-25"
JSON_AND_SSE = "application/json, text/event-stream"


@pytest.fixture
def mcp_url(live_server: LiveServer) -> str:
    return f"{live_server.url}/mcp"


@contextmanager
def mcp_server(database_url: str, data_dir: Path, **overrides: Any) -> Iterator[str]:
    """A live server of its own with these settings; yields its `/mcp` URL."""
    live = start_live_server(make_settings(database_url, data_dir, **overrides))
    try:
        yield f"{live.url}/mcp"
    finally:
        stop_live_server(live)


@pytest.fixture(scope="session")
def stateful_mcp_url(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`/mcp` of a server that keeps sessions (`MCP_STATELESS=false`), with the default caps."""
    with mcp_server(database_url, tmp_path_factory.mktemp("stateful"), mcp_stateless=False) as url:
        yield url


ApiKeyFactory = Callable[[TestUser], Awaitable[str]]


@pytest.fixture
def make_api_key(client: httpx.AsyncClient) -> ApiKeyFactory:
    """`await make_api_key(user)`: a new API key secret of that user."""

    async def factory(owner: TestUser) -> str:
        response = await client.post(
            "/api/users/me/api-keys", json={"name": "mcp client"}, headers=owner.headers
        )
        assert response.status_code == 201, response.text
        return str(response.json()["data"]["key"])

    return factory


@asynccontextmanager
async def mcp_client(
    url: str, token: str | None, *, mode: str = "legacy", headers: dict[str, str] | None = None
) -> AsyncIterator[Client]:
    """The official SDK client on `url`, sending `token` as a bearer credential.

    `mode="legacy"` runs the initialize handshake (a session); `mode="auto"` negotiates the newest
    protocol revision the server speaks.
    """
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    async with (
        httpx2.AsyncClient(headers=sent, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as session,
    ):
        yield session


@contextmanager
def refused_by_server() -> Iterator[None]:
    """Expects the SDK client to fail with an MCP error (raised alone, or inside the task group's
    exception group when the failure ends the connection)."""
    with pytest.raises((MCPError, BaseExceptionGroup)) as raised:
        yield
    if isinstance(raised.value, BaseExceptionGroup):
        assert raised.group_contains(MCPError), raised.value


def rpc(method: str, params: dict[str, Any] | None = None, request_id: int | None = 1) -> Any:
    """A JSON-RPC message (a notification when `request_id` is None)."""
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if request_id is not None:
        message["id"] = request_id
    if params is not None:
        message["params"] = params
    return message


INITIALIZE = rpc(
    "initialize",
    {
        "protocolVersion": HANDSHAKE_VERSION,
        "capabilities": {},
        "clientInfo": {"name": "raw-test", "version": "1"},
    },
)


def rpc_headers(token: str | None, session_id: str | None = None, **extra: str) -> dict[str, str]:
    """Headers of a handshake-era JSON-RPC POST."""
    headers = {"Accept": JSON_AND_SSE, "Content-Type": "application/json", **extra}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    if session_id is not None:
        headers["Mcp-Session-Id"] = session_id
        headers["Mcp-Protocol-Version"] = HANDSHAKE_VERSION
    return headers


def rpc_result(response: httpx.Response) -> Any:
    """The JSON-RPC message of a response, whether sent as JSON or as one SSE event."""
    if response.headers["content-type"].startswith("text/event-stream"):
        data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        messages = [json.loads(item) for item in data if item]
        assert len(messages) == 1, response.text
        return messages[0]
    return response.json()


async def open_session(http: httpx.AsyncClient, url: str, token: str) -> str:
    """Initialize a session over raw HTTP as the token's user; its `Mcp-Session-Id`."""
    response = await http.post(url, json=INITIALIZE, headers=rpc_headers(token))
    assert response.status_code == 200, response.text
    assert rpc_result(response)["result"]["serverInfo"]["name"] == "parley"
    session_id = response.headers["mcp-session-id"]
    initialized = await http.post(
        url,
        json=rpc("notifications/initialized", request_id=None),
        headers=rpc_headers(token, session_id),
    )
    assert initialized.status_code == 202, initialized.text
    return session_id
