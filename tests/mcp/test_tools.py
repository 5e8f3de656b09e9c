"""The MCP server driven by the official `mcp` SDK client over real HTTP: initialize, list the
tools, call each one with an API key or an access token, bad arguments, unknown tasks and tools,
isolation between users, both protocol eras (the handshake and 2026-07-28), and sessions
(`MCP_STATELESS=false`)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import mcp.types as types
import pytest
from mcp import MCPError

from tests.fixtures.accounts import ApiKeyFactory, TestUser
from tests.fixtures.mcp import mcp_client, refused_by_server

TOOL_NAMES = [
    "add_task",
    "list_tasks",
    "get_task",
    "update_task",
    "complete_task",
    "delete_task",
    "search_knowledge",
]


def payload(result: types.CallToolResult) -> dict[str, Any]:
    """A successful result's structured content, checked against its text twin."""
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    text = result.content[0]
    assert isinstance(text, types.TextContent)
    assert json.loads(text.text) == result.structured_content
    return result.structured_content


def error_text(result: types.CallToolResult) -> str:
    assert result.is_error
    text = result.content[0]
    assert isinstance(text, types.TextContent)
    return text.text


async def test_initialize_and_list_tools(mcp_url: str, user: TestUser) -> None:
    async with mcp_client(mcp_url, user.access_token) as client:
        assert client.server_info is not None
        assert client.server_info.name == "parley"
        assert client.server_capabilities.tools is not None
        assert client.instructions
        listed = await client.list_tools()
    tools = {tool.name: tool for tool in listed.tools}
    assert sorted(tools) == sorted(TOOL_NAMES)
    for tool in tools.values():
        assert tool.description
        assert tool.input_schema["type"] == "object"
        assert tool.output_schema is not None
        assert tool.annotations is not None
    assert tools["add_task"].input_schema["required"] == ["title"]
    assert tools["list_tasks"].annotations is not None
    assert tools["list_tasks"].annotations.read_only_hint is True
    assert tools["delete_task"].annotations is not None
    assert tools["delete_task"].annotations.destructive_hint is True


async def test_every_tool_with_an_api_key(
    mcp_url: str, user: TestUser, make_api_key: ApiKeyFactory, client: httpx.AsyncClient
) -> None:
    key = await make_api_key(user)
    async with mcp_client(mcp_url, key) as session:
        added = payload(
            await session.call_tool(
                "add_task",
                {
                    "title": "Plan the trip",
                    "priority": "high",
                    "due_at": "2030-07-01T09:00:00+02:00",
                    "tags": ["travel", "summer"],
                },
            )
        )
        assert added["due_at"] == "2030-07-01T07:00:00Z"
        assert added["tags"] == ["summer", "travel"]
        other = payload(await session.call_tool("add_task", {"title": "Pack"}))

        listed = payload(await session.call_tool("list_tasks", {}))
        assert [item["id"] for item in listed["items"]] == [other["id"], added["id"]]
        assert listed["next_cursor"] is None
        filtered = payload(await session.call_tool("list_tasks", {"tag": "travel"}))
        assert filtered["items"] == [added]
        first = payload(await session.call_tool("list_tasks", {"sort": "priority", "limit": 1}))
        assert [item["id"] for item in first["items"]] == [other["id"]]
        rest = payload(
            await session.call_tool(
                "list_tasks", {"sort": "priority", "limit": 1, "cursor": first["next_cursor"]}
            )
        )
        assert [item["id"] for item in rest["items"]] == [added["id"]]

        fetched = payload(await session.call_tool("get_task", {"task_id": added["id"]}))
        assert fetched == added

        updated = payload(
            await session.call_tool(
                "update_task",
                {"task_id": added["id"], "title": "Plan the big trip", "due_at": None},
            )
        )
        assert updated["title"] == "Plan the big trip"
        assert updated["due_at"] is None
        assert updated["priority"] == "high"

        completed = payload(await session.call_tool("complete_task", {"task_id": added["id"]}))
        assert completed["completed"] is True
        assert completed["completed_at"] is not None

        deleted = payload(await session.call_tool("delete_task", {"task_id": other["id"]}))
        assert deleted == {"id": other["id"], "deleted": True}

    # The REST API sees exactly what the MCP client did.
    response = await client.get("/api/tasks", headers=user.headers)
    assert response.json()["data"]["items"] == [completed]


async def test_the_2026_protocol_era_works_too(mcp_url: str, user: TestUser) -> None:
    async with mcp_client(mcp_url, user.access_token, mode="auto") as session:
        assert session.protocol_version not in ("2025-06-18", "2025-11-25")
        tools = await session.list_tools()
        assert sorted(tool.name for tool in tools.tools) == sorted(TOOL_NAMES)
        added = payload(await session.call_tool("add_task", {"title": "Modern"}))
        listed = payload(await session.call_tool("list_tasks", {}))
        assert listed["items"] == [added]
        missing = await session.call_tool("get_task", {"task_id": str(uuid.uuid4())})
        assert error_text(missing) == "No such task."


@pytest.mark.parametrize(
    ("name", "arguments", "mentions"),
    [
        ("add_task", {}, "title"),
        ("add_task", {"title": "t", "priority": "urgent"}, "priority"),
        ("add_task", {"title": "t", "due_at": "2030-01-01T09:00:00"}, "due_at"),
        ("add_task", {"title": "t", "owner": "someone else"}, "owner"),
        ("add_task", {"title": "nul\x00"}, "title"),
        ("get_task", {"task_id": "42"}, "task_id"),
        ("list_tasks", {"limit": 1000}, "limit"),
        ("update_task", {"task_id": str(uuid.uuid4()), "completed": None}, "completed"),
        ("complete_task", {}, "task_id"),
    ],
)
async def test_bad_arguments_are_tool_errors(
    mcp_url: str, user: TestUser, name: str, arguments: dict[str, Any], mentions: str
) -> None:
    async with mcp_client(mcp_url, user.access_token) as session:
        result = await session.call_tool(name, arguments)
        message = error_text(result)
        assert message.startswith("Invalid arguments:")
        assert mentions in message
        # The session is still usable after a refused call.
        assert payload(await session.call_tool("list_tasks", {}))["items"] == []


async def test_unknown_task_and_unknown_tool(mcp_url: str, user: TestUser) -> None:
    unknown = str(uuid.uuid4())
    async with mcp_client(mcp_url, user.access_token) as session:
        for name, arguments in (
            ("get_task", {"task_id": unknown}),
            ("update_task", {"task_id": unknown, "title": "x"}),
            ("complete_task", {"task_id": unknown}),
            ("delete_task", {"task_id": unknown}),
        ):
            result = await session.call_tool(name, arguments)
            assert error_text(result) == "No such task.", name
            assert result.structured_content == {
                "error": {"code": "not_found", "message": "No such task."}
            }
        with pytest.raises(MCPError) as raised:
            await session.call_tool("drop_database", {})
        assert raised.value.code == types.INVALID_PARAMS
        assert payload(await session.call_tool("list_tasks", {}))["items"] == []


async def test_another_users_tasks_are_out_of_reach(
    mcp_url: str,
    user: TestUser,
    other_user: TestUser,
    make_api_key: ApiKeyFactory,
    client: httpx.AsyncClient,
) -> None:
    created = await client.post(
        "/api/tasks", json={"title": "A's secret", "tags": ["private"]}, headers=user.headers
    )
    task = created.json()["data"]
    intruder_key = await make_api_key(other_user)

    async with mcp_client(mcp_url, intruder_key) as session:
        listed = payload(await session.call_tool("list_tasks", {}))
        assert listed["items"] == []
        assert payload(await session.call_tool("list_tasks", {"tag": "private"}))["items"] == []
        assert payload(await session.call_tool("list_tasks", {"q": "secret"}))["items"] == []
        for name, arguments in (
            ("get_task", {"task_id": task["id"]}),
            ("update_task", {"task_id": task["id"], "title": "Mine now"}),
            ("complete_task", {"task_id": task["id"]}),
            ("delete_task", {"task_id": task["id"]}),
        ):
            assert error_text(await session.call_tool(name, arguments)) == "No such task.", name
        own = payload(await session.call_tool("add_task", {"title": "B's own"}))

    response = await client.get(f"/api/tasks/{task['id']}", headers=user.headers)
    assert response.json()["data"] == task
    async with mcp_client(mcp_url, user.access_token) as session:
        mine = payload(await session.call_tool("list_tasks", {}))
        assert [item["id"] for item in mine["items"]] == [task["id"]]
        assert error_text(await session.call_tool("get_task", {"task_id": own["id"]}))


@pytest.mark.parametrize(
    "token", [None, "not-a-token", "pk_" + "x" * 40, "eyJhbGciOiJIUzI1NiJ9.e30.x"]
)
async def test_the_sdk_client_is_refused_without_valid_credentials(
    mcp_url: str, token: str | None
) -> None:
    with refused_by_server():
        async with mcp_client(mcp_url, token) as session:
            await session.list_tools()


async def test_a_deactivated_user_is_refused_mid_session(
    mcp_url: str, user: TestUser, admin: TestUser, client: httpx.AsyncClient
) -> None:
    async with mcp_client(mcp_url, user.access_token) as session:
        payload(await session.call_tool("add_task", {"title": "Before"}))
        response = await client.patch(
            f"/api/admin/users/{user.id}", json={"is_active": False}, headers=admin.headers
        )
        assert response.status_code == 200, response.text
        with refused_by_server():
            await session.call_tool("list_tasks", {})


async def test_the_sdk_client_works_with_sessions_too(
    stateful_mcp_url: str, user: TestUser
) -> None:
    """With `MCP_STATELESS=false` the handshake opens a session, which the calls then use."""
    async with mcp_client(stateful_mcp_url, user.access_token) as session:
        added = payload(await session.call_tool("add_task", {"title": "In a session"}))
        assert payload(await session.call_tool("get_task", {"task_id": added["id"]})) == added
        assert payload(await session.call_tool("list_tasks", {}))["items"] == [added]
