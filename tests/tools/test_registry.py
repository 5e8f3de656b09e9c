"""The tool registry and the task tools, called in process as the assistant calls them: the
published schemas, results shaped like the REST API's, and errors the caller can read."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from parley.core.errors import InternalError, NotFound
from parley.tools.builtin import builtin_registry
from parley.tools.registry import ToolContext, ToolDefinition, ToolError, ToolRegistry
from tests.fixtures.accounts import TestUser
from tests.fixtures.tools import tool_context

TASK_TOOL_NAMES = {
    "add_task",
    "list_tasks",
    "get_task",
    "update_task",
    "complete_task",
    "delete_task",
}


@pytest.fixture
def registry() -> ToolRegistry:
    return builtin_registry()


def test_the_builtin_registry_publishes_the_task_tools(registry: ToolRegistry) -> None:
    assert {tool.name for tool in registry} >= TASK_TOOL_NAMES
    for tool in registry:
        assert tool.description
        schema = tool.input_schema()
        assert schema["type"] == "object"
        assert schema["additionalProperties"] is False
        assert tool.output_schema()["type"] == "object"
    add = registry.get("add_task")
    assert add is not None
    assert add.input_schema()["required"] == ["title"]
    get = registry.get("get_task")
    assert get is not None
    assert get.read_only
    assert get.input_schema()["properties"]["task_id"]["format"] == "uuid"
    assert registry.get("nothing") is None


async def test_tools_act_as_the_user_and_answer_rest_shaped_tasks(
    registry: ToolRegistry, app: FastAPI, user: TestUser, client: httpx.AsyncClient
) -> None:
    context = await tool_context(app, user)
    added = await registry.call(
        "add_task",
        {
            "title": "Call mum",
            "priority": "high",
            "tags": ["family"],
            "due_at": "2030-01-01T10:00:00+01:00",
        },
        context,
    )
    assert not added.is_error, added.content
    task = added.content
    rest = await client.get(f"/api/tasks/{task['id']}", headers=user.headers)
    assert rest.json()["data"] == task
    assert task["due_at"] == "2030-01-01T09:00:00Z"

    listed = await registry.call("list_tasks", {"tag": "family"}, context)
    assert listed.content == {"items": [task], "next_cursor": None}

    updated = await registry.call(
        "update_task", {"task_id": task["id"], "description": "Sunday"}, context
    )
    assert updated.content["description"] == "Sunday"
    assert updated.content["title"] == "Call mum"

    completed = await registry.call("complete_task", {"task_id": task["id"]}, context)
    assert completed.content["completed"] is True
    assert completed.content["completed_at"] is not None
    reopened = await registry.call(
        "complete_task", {"task_id": task["id"], "completed": False}, context
    )
    assert reopened.content["completed_at"] is None

    fetched = await registry.call("get_task", {"task_id": task["id"]}, context)
    assert fetched.content == reopened.content

    deleted = await registry.call("delete_task", {"task_id": task["id"]}, context)
    assert deleted.content == {"id": task["id"], "deleted": True}
    assert (await client.get(f"/api/tasks/{task['id']}", headers=user.headers)).status_code == 404


@pytest.mark.parametrize(
    ("name", "arguments", "mentions"),
    [
        ("add_task", {}, "title"),
        ("add_task", {"title": "x" * 501}, "title"),
        ("add_task", {"title": "t", "due_at": "2030-01-01T10:00:00"}, "due_at"),
        ("add_task", {"title": "t", "colour": "red"}, "colour"),
        ("get_task", {"task_id": "not-a-uuid"}, "task_id"),
        ("list_tasks", {"sort": "title"}, "sort"),
        ("list_tasks", {"limit": 0}, "limit"),
        ("update_task", {"title": "no id"}, "task_id"),
        ("update_task", {"task_id": str(uuid.uuid4()), "title": None}, "title"),
    ],
)
async def test_invalid_arguments_are_a_readable_error(
    registry: ToolRegistry,
    app: FastAPI,
    user: TestUser,
    name: str,
    arguments: dict[str, Any],
    mentions: str,
) -> None:
    result = await registry.call(name, arguments, await tool_context(app, user))
    assert result.is_error
    assert result.content["error"]["code"] == "invalid_arguments"
    message = result.error_message
    assert message is not None
    assert message.startswith("Invalid arguments:")
    assert mentions in message
    assert result.as_text() == message


async def test_unknown_and_foreign_tasks_are_not_found(
    registry: ToolRegistry, app: FastAPI, user: TestUser, other_user: TestUser
) -> None:
    owner = await tool_context(app, user)
    intruder = await tool_context(app, other_user)
    task = (await registry.call("add_task", {"title": "Mine"}, owner)).content

    for name, arguments in (
        ("get_task", {"task_id": task["id"]}),
        ("update_task", {"task_id": task["id"], "title": "Taken"}),
        ("complete_task", {"task_id": task["id"]}),
        ("delete_task", {"task_id": task["id"]}),
        ("get_task", {"task_id": str(uuid.uuid4())}),
    ):
        result = await registry.call(name, arguments, intruder)
        assert result.is_error, name
        assert result.content == {"error": {"code": "not_found", "message": "No such task."}}

    assert (await registry.call("list_tasks", {}, intruder)).content["items"] == []
    still = await registry.call("get_task", {"task_id": task["id"]}, owner)
    assert still.content == task


async def test_an_unknown_tool_or_a_bad_cursor_is_an_error_result(
    registry: ToolRegistry, app: FastAPI, user: TestUser
) -> None:
    context = await tool_context(app, user)
    unknown = await registry.call("launch_rockets", {}, context)
    assert unknown.is_error
    assert unknown.content["error"]["code"] == "unknown_tool"
    cursor = await registry.call("list_tasks", {"cursor": "garbage"}, context)
    assert cursor.is_error
    assert cursor.content["error"]["code"] == "validation_error"


class _NoArguments(BaseModel):
    pass


async def _refuse(_context: ToolContext, _args: _NoArguments) -> BaseModel:
    raise ToolError("Not today.", code="refused")


async def _missing(_context: ToolContext, _args: _NoArguments) -> BaseModel:
    raise NotFound("Nothing here.")


async def _broken(_context: ToolContext, _args: _NoArguments) -> BaseModel:
    raise InternalError()


def _tool(name: str, function: Any) -> ToolDefinition[_NoArguments]:
    return ToolDefinition(
        name=name,
        description=name,
        arguments=_NoArguments,
        function=function,
        result=_NoArguments,
    )


async def test_caller_errors_are_results_and_server_errors_propagate(
    app: FastAPI, user: TestUser
) -> None:
    registry = ToolRegistry.of([_tool("refuse", _refuse), _tool("missing", _missing)])
    registry.register(_tool("broken", _broken))
    context = await tool_context(app, user)

    refused = await registry.call("refuse", None, context)
    assert refused.content == {"error": {"code": "refused", "message": "Not today."}}
    missing = await registry.call("missing", {}, context)
    assert missing.content == {"error": {"code": "not_found", "message": "Nothing here."}}
    with pytest.raises(InternalError):
        await registry.call("broken", {}, context)
    with pytest.raises(ValueError, match="already registered"):
        registry.register(_tool("broken", _broken))
    assert len(registry) == 3
