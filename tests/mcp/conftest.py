"""Fixtures for the MCP tests: the live server's `/mcp` URL (stateless, the default) and that of a
server keeping sessions (`MCP_STATELESS=false`), and API keys (helpers: `tests.fixtures.mcp`)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.fixtures.accounts import ApiKeyFactory, TestUser
from tests.fixtures.mcp import mcp_server
from tests.fixtures.servers import LiveServer


@pytest.fixture
def mcp_url(live_server: LiveServer) -> str:
    return f"{live_server.url}/mcp"


@pytest.fixture(scope="session")
def stateful_mcp_url(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`/mcp` of a server that keeps sessions (`MCP_STATELESS=false`), with the default caps."""
    with mcp_server(database_url, tmp_path_factory.mktemp("stateful"), mcp_stateless=False) as url:
        yield url


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
