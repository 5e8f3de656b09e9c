"""`search_knowledge` over MCP, with the real mcp SDK against a live server on the test database:
it searches every ready file of the caller's and nothing of anyone else's."""

from __future__ import annotations

from typing import Any

import httpx
import mcp.types as types

from parley.jobs.worker import Worker
from tests.fixtures.accounts import TestUser
from tests.fixtures.mcp import mcp_client
from tests.fixtures.servers import LiveServer
from tests.knowledge.conftest import settled, upload

NOTES = b"""# Garden notes

## Watering

Water the tomatoes at the base every second morning; never wet the leaves in the evening.
"""


def structured(result: types.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def test_search_knowledge_over_mcp_keeps_to_the_caller(
    client: httpx.AsyncClient,
    user: TestUser,
    other_user: TestUser,
    worker: Worker,
    live_server: LiveServer,
) -> None:
    created = (await upload(client, user, "garden.md", NOTES, "text/markdown")).json()["data"]
    await settled(client, user, created["id"])
    url = f"{live_server.url}/mcp"
    async with mcp_client(url, user.access_token) as session:
        found = structured(
            await session.call_tool("search_knowledge", {"query": "when to water tomatoes"})
        )
        bad = await session.call_tool("search_knowledge", {"query": ""})
    assert found["results"][0]["file_id"] == created["id"]
    assert found["results"][0]["heading"] == "Watering"
    assert "every second morning" in found["results"][0]["text"]
    assert bad.is_error
    async with mcp_client(url, other_user.access_token) as session:
        theirs = structured(
            await session.call_tool("search_knowledge", {"query": "when to water tomatoes"})
        )
    assert theirs["results"] == []
