"""The offline model, run by a Pydantic AI agent exactly as a provider's model would be, with stub
task tools of the real tools' names and arguments."""

from __future__ import annotations

import re
import time
from datetime import date, datetime
from typing import Any, Literal

import pytest
from pydantic_ai import Agent, ModelRetry
from pydantic_ai.messages import (
    ModelMessage,
    ModelResponse,
    PartDeltaEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ToolCallPart,
)
from pydantic_ai.run import AgentRunResultEvent

from parley.llm.offline.model import OfflineModel
from parley.llm.offline.planner import INTRODUCTION
from parley.usage.pricing import estimate_tokens

TODAY = date(2026, 11, 26)  # a Thursday
TOMORROW = "2026-11-27T00:00:00Z"


class TaskStubs:
    """In-memory tasks behind tools named and shaped like Parley's task tools."""

    def __init__(self) -> None:
        self.tasks: list[dict[str, Any]] = []
        self.fail_completing = False

    def add(self, title: str, **fields: Any) -> dict[str, Any]:
        task = {
            "id": f"0196f000-0000-7000-8000-{len(self.tasks) + 1:012d}",
            "title": title,
            "description": None,
            "completed": False,
            "priority": "medium",
            "due_at": None,
            "tags": [],
            **fields,
        }
        self.tasks.append(task)
        return task

    def _find(self, task_id: str) -> dict[str, Any]:
        for task in self.tasks:
            if task["id"] == task_id:
                return task
        raise ModelRetry(f"No task has the id {task_id}.")

    def agent(self, model: OfflineModel, *, with_tools: bool = True) -> Agent[None, str]:
        agent: Agent[None, str] = Agent(model)
        if not with_tools:
            return agent
        stubs = self

        @agent.tool_plain
        def add_task(
            title: str,
            description: str | None = None,
            priority: Literal["low", "medium", "high"] = "medium",
            due_at: datetime | None = None,
            tags: list[str] | None = None,
        ) -> dict[str, Any]:
            return stubs.add(
                title,
                description=description,
                priority=priority,
                due_at=due_at.isoformat() if due_at else None,
                tags=tags or [],
            )

        @agent.tool_plain
        def list_tasks(
            completed: bool | None = None,
            priority: Literal["low", "medium", "high"] | None = None,
            tag: str | None = None,
            q: str | None = None,
            limit: int = 20,
        ) -> dict[str, Any]:
            items = [
                task
                for task in stubs.tasks
                if (completed is None or task["completed"] == completed)
                and (priority is None or task["priority"] == priority)
                and (tag is None or tag in task["tags"])
                and (q is None or q.lower() in task["title"].lower())
            ]
            return {"items": items[:limit], "next_cursor": None}

        @agent.tool_plain
        def get_task(task_id: str) -> dict[str, Any]:
            return stubs._find(task_id)

        @agent.tool_plain
        def update_task(
            task_id: str,
            title: str | None = None,
            priority: Literal["low", "medium", "high"] | None = None,
            due_at: datetime | None = None,
        ) -> dict[str, Any]:
            task = stubs._find(task_id)
            if title is not None:
                task["title"] = title
            if priority is not None:
                task["priority"] = priority
            if due_at is not None:
                task["due_at"] = due_at.isoformat()
            return task

        @agent.tool_plain
        def complete_task(task_id: str, completed: bool = True) -> dict[str, Any]:
            if stubs.fail_completing:
                raise ModelRetry("The task store is read-only today.")
            task = stubs._find(task_id)
            task["completed"] = completed
            return task

        @agent.tool_plain
        def delete_task(task_id: str) -> dict[str, Any]:
            task = stubs._find(task_id)
            stubs.tasks.remove(task)
            return {"id": task_id, "deleted": True}

        return agent


def _model(delay_seconds: float = 0.0) -> OfflineModel:
    return OfflineModel(delay_seconds=delay_seconds, today=lambda: TODAY)


def _tool_calls(messages: list[ModelMessage]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (part.tool_name, part.args_as_dict())
        for message in messages
        if isinstance(message, ModelResponse)
        for part in message.parts
        if isinstance(part, ToolCallPart)
    ]


async def _stream(agent: Agent[None, str], prompt: str) -> tuple[list[str], Any]:
    """The text pieces as they stream, and the run's result."""
    pieces: list[str] = []
    result: Any = None
    async with agent.run_stream_events(prompt) as events:
        async for event in events:
            if isinstance(event, PartStartEvent) and isinstance(event.part, TextPart):
                pieces.append(event.part.content)
            elif isinstance(event, PartDeltaEvent) and isinstance(event.delta, TextPartDelta):
                pieces.append(event.delta.content_delta)
            elif isinstance(event, AgentRunResultEvent):
                result = event.result
    return pieces, result


async def test_it_streams_word_by_word_at_its_pace() -> None:
    delay = 0.005
    started = time.monotonic()
    pieces, result = await _stream(TaskStubs().agent(_model(delay)), "hello there")
    elapsed = time.monotonic() - started
    assert result.output == INTRODUCTION
    assert "".join(pieces) == INTRODUCTION
    assert pieces == re.findall(r"\s*\S+", INTRODUCTION)
    assert len(pieces) > 50
    assert elapsed >= (len(pieces) - 1) * delay * 0.9


async def test_the_same_conversation_gives_the_same_reply() -> None:
    runs = []
    for _ in range(2):
        stubs = TaskStubs()
        stubs.add("Buy milk")
        pieces, result = await _stream(stubs.agent(_model()), "mark buy milk as done")
        runs.append((pieces, _tool_calls(result.all_messages()), result.usage))
    assert runs[0] == runs[1]


async def test_add_a_task() -> None:
    stubs = TaskStubs()
    pieces, result = await _stream(stubs.agent(_model()), "add a task to buy milk tomorrow")
    assert _tool_calls(result.all_messages()) == [
        ("add_task", {"title": "Buy milk", "due_at": TOMORROW})
    ]
    assert stubs.tasks[0]["title"] == "Buy milk"
    assert stubs.tasks[0]["due_at"].startswith("2026-11-27T00:00:00")
    assert result.output == 'Added "Buy milk" (due 2026-11-27).'
    assert "".join(pieces) == result.output


async def test_add_with_priority_and_tags() -> None:
    stubs = TaskStubs()
    result = await stubs.agent(_model()).run(
        "Please remind me to call mom on friday, high priority #family"
    )
    assert _tool_calls(result.all_messages()) == [
        (
            "add_task",
            {"title": "Call mom", "due_at": TOMORROW, "priority": "high", "tags": ["family"]},
        )
    ]
    assert result.output == 'Added "Call mom" (due 2026-11-27, high priority, #family).'


async def test_what_is_on_my_list() -> None:
    stubs = TaskStubs()
    stubs.add("Buy milk", due_at="2026-11-27T00:00:00+00:00")
    stubs.add("Call mom", priority="high")
    stubs.add("Old chore", completed=True)
    _, result = await _stream(stubs.agent(_model()), "what's on my list?")
    assert _tool_calls(result.all_messages()) == [("list_tasks", {"completed": False})]
    assert result.output == (
        'You have 2 open tasks:\n\n- "Buy milk" (due 2026-11-27)\n- "Call mom" (high priority)'
    )


async def test_an_empty_list() -> None:
    result = await TaskStubs().agent(_model()).run("show me my tasks")
    assert result.output == 'You have no open tasks. Try "add a task to buy milk tomorrow".'


async def test_mark_a_task_done_looks_it_up_first() -> None:
    stubs = TaskStubs()
    stubs.add("Walk the dog")
    milk = stubs.add("Buy milk")
    _, result = await _stream(stubs.agent(_model()), "mark buy milk as done")
    assert _tool_calls(result.all_messages()) == [
        ("list_tasks", {"q": "buy milk"}),
        ("complete_task", {"task_id": milk["id"]}),
    ]
    assert milk["completed"] is True
    assert result.output == 'Marked "Buy milk" as done.'


async def test_delete_a_task_by_a_word_of_its_title() -> None:
    stubs = TaskStubs()
    milk = stubs.add("Buy milk")
    stubs.add("Walk the dog")
    _, result = await _stream(stubs.agent(_model()), "delete the milk task")
    assert _tool_calls(result.all_messages()) == [
        ("list_tasks", {"q": "milk"}),
        ("delete_task", {"task_id": milk["id"]}),
    ]
    assert [task["title"] for task in stubs.tasks] == ["Walk the dog"]
    assert result.output == 'Deleted "Buy milk".'


async def test_rename_a_task() -> None:
    stubs = TaskStubs()
    milk = stubs.add("Buy milk")
    result = await stubs.agent(_model()).run("rename the milk task to buy oat milk")
    assert _tool_calls(result.all_messages())[-1] == (
        "update_task",
        {"task_id": milk["id"], "title": "Buy oat milk"},
    )
    assert milk["title"] == "Buy oat milk"
    assert result.output == 'Done: I renamed it to "Buy oat milk" ("Buy oat milk").'


async def test_a_task_that_does_not_exist() -> None:
    stubs = TaskStubs()
    stubs.add("Walk the dog")
    result = await stubs.agent(_model()).run("delete the milk task")
    # A second look without the filter, in case the search is stricter than the titles.
    assert _tool_calls(result.all_messages()) == [("list_tasks", {"q": "milk"}), ("list_tasks", {})]
    assert result.output.startswith('I couldn\'t find a task matching "milk".')
    assert len(stubs.tasks) == 1


async def test_several_matches_ask_which_one() -> None:
    stubs = TaskStubs()
    stubs.add("Buy milk")
    stubs.add("Buy oat milk")
    result = await stubs.agent(_model()).run("delete the milk task")
    assert [name for name, _ in _tool_calls(result.all_messages())] == ["list_tasks"]
    assert result.output.startswith('2 tasks match "milk": "Buy milk", "Buy oat milk".')
    assert len(stubs.tasks) == 2


async def test_a_failing_tool_ends_the_turn_with_its_error() -> None:
    stubs = TaskStubs()
    stubs.add("Buy milk")
    stubs.fail_completing = True
    result = await stubs.agent(_model()).run("complete buy milk")
    assert [name for name, _ in _tool_calls(result.all_messages())] == [
        "list_tasks",
        "complete_task",
    ]
    assert result.output.startswith("The complete_task tool failed, so I stopped there:")
    assert "read-only today" in result.output


async def test_without_task_tools_it_says_so() -> None:
    result = await TaskStubs().agent(_model(), with_tools=False).run("add a task to buy milk")
    assert result.output == "I can't add tasks here: the task tools are not available."


@pytest.mark.parametrize("prompt", ["hello", "What is the capital of France?", "add a task"])
async def test_anything_else_gets_the_introduction(prompt: str) -> None:
    result = await TaskStubs().agent(_model()).run(prompt)
    assert result.output == INTRODUCTION
    assert _tool_calls(result.all_messages()) == []
    assert "OPENAI_API_KEY" in result.output


async def test_usage_is_reported_streaming_or_not() -> None:
    agent = TaskStubs().agent(_model())
    _, streamed = await _stream(agent, "hello")
    ran = await agent.run("hello")
    for result in (streamed, ran):
        assert result.usage.requests == 1
        assert result.usage.output_tokens == estimate_tokens(INTRODUCTION)
        assert result.usage.input_tokens > estimate_tokens("hello")
    assert streamed.usage.input_tokens == ran.usage.input_tokens


async def test_a_longer_conversation_costs_more_input_tokens() -> None:
    agent = TaskStubs().agent(_model())
    first = await agent.run("hello")
    second = await agent.run("hello", message_history=first.all_messages())
    assert second.usage.input_tokens > first.usage.input_tokens + estimate_tokens(INTRODUCTION)
    # A tool round trip is two requests, both counted.
    third = await agent.run("what's on my list?")
    assert third.usage.requests == 2
    assert third.usage.tool_calls == 1


def test_it_is_identified_as_the_offline_model() -> None:
    model = _model()
    assert (model.system, model.model_name, model.model_id) == (
        "offline",
        "parley",
        "offline:parley",
    )
    assert model.context_window == 32768
