"""A new user's first conversation with the offline model (the default when no provider is set up):
plain requests about tasks become real tool calls on their own tasks, streamed word by word, saved
with their usage, and read back intact."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from tests.fixtures.accounts import TestUser
from tests.fixtures.chats import new_chat
from tests.fixtures.streams import StreamEvent, chunk_types, parse_sse

Json = dict[str, Any]
OFFLINE_MODEL = "offline:parley"


@dataclass
class Turn:
    """One streamed reply: its events and what they carried."""

    events: list[StreamEvent]

    @property
    def chunks(self) -> list[Json]:
        return [event.chunk for event in self.events if event.data != "[DONE]"]

    @property
    def message_id(self) -> str:
        return str(self.chunks[0]["messageId"])

    def of_type(self, kind: str) -> list[Json]:
        return [chunk for chunk in self.chunks if chunk["type"] == kind]

    @property
    def text(self) -> str:
        return "".join(chunk["delta"] for chunk in self.of_type("text-delta"))

    def tool_names(self) -> list[str]:
        return [chunk["toolName"] for chunk in self.of_type("tool-input-available")]


async def _say(client: httpx.AsyncClient, user: TestUser, chat_id: str, content: str) -> Turn:
    response = await client.post(
        f"/api/chats/{chat_id}/messages", json={"content": content}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    assert events[-1].data == "[DONE]"
    types = chunk_types(events)
    assert types[0] == "start"
    assert types[-1] == "finish", types
    assert "error" not in types
    turn = Turn(events)
    assert len(turn.of_type("text-delta")) > 1, "the reply should stream word by word"
    return turn


async def _tasks(client: httpx.AsyncClient, user: TestUser) -> list[Json]:
    response = await client.get("/api/tasks", headers=user.headers)
    assert response.status_code == 200, response.text
    items: list[Json] = response.json()["data"]["items"]
    return items


async def _messages(client: httpx.AsyncClient, user: TestUser, chat_id: str) -> list[Json]:
    response = await client.get(
        f"/api/chats/{chat_id}/messages", params={"limit": 100}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    items: list[Json] = response.json()["data"]["items"]
    return items


def _utc_today() -> date:
    return datetime.now(UTC).date()


def _assert_saved_like_its_stream(message: Json, turn: Turn) -> None:
    """The stored reply: complete, the offline model's, costed at nothing, and with every tool
    call and result the stream carried."""
    assert message["id"] == turn.message_id
    assert message["role"] == "assistant"
    assert message["status"] == "complete"
    assert message["error"] is None
    assert message["model_id"] == OFFLINE_MODEL
    usage = message["usage"]
    assert usage["input_tokens"] > 0
    assert usage["output_tokens"] > 0
    assert usage["cost_usd"] == 0.0
    calls = [part for part in message["parts"] if part["type"] == "tool_call"]
    results = [part for part in message["parts"] if part["type"] == "tool_result"]
    assert [
        {"tool_call_id": c["toolCallId"], "tool_name": c["toolName"], "input": c["input"]}
        for c in turn.of_type("tool-input-available")
    ] == [
        {"tool_call_id": c["tool_call_id"], "tool_name": c["tool_name"], "input": c["input"]}
        for c in calls
    ]
    outputs = turn.of_type("tool-output-available")
    assert [(o["toolCallId"], o["output"]) for o in outputs] == [
        (r["tool_call_id"], r["output"]) for r in results
    ]
    assert [r["tool_name"] for r in results] == [c["tool_name"] for c in calls]
    assert not any(r["is_error"] for r in results)
    texts = [part["text"] for part in message["parts"] if part["type"] == "text"]
    assert "".join(texts) == turn.text


async def test_a_new_user_manages_tasks_with_the_offline_model(
    client: httpx.AsyncClient, user: TestUser, other_user: TestUser
) -> None:
    # Another user's tasks share the titles, and must not be touched.
    for title in ("Buy milk", "Call mum"):
        theirs = await client.post("/api/tasks", json={"title": title}, headers=other_user.headers)
        assert theirs.status_code == 201, theirs.text

    chat_id = await new_chat(client, user)
    turns: list[Turn] = []

    before = _utc_today()
    add = await _say(client, user, chat_id, "add a task to buy milk tomorrow")
    after = _utc_today()
    turns.append(add)
    assert add.tool_names() == ["add_task"]
    assert add.of_type("tool-input-available")[0]["input"]["title"] == "Buy milk"
    assert len(add.of_type("tool-output-available")) == 1
    tasks = await _tasks(client, user)
    assert [task["title"] for task in tasks] == ["Buy milk"]
    milk = tasks[0]
    assert milk["completed"] is False
    due = datetime.fromisoformat(milk["due_at"].replace("Z", "+00:00"))
    assert due.utcoffset() == timedelta(0)
    assert due.date() in {before + timedelta(days=1), after + timedelta(days=1)}
    assert add.of_type("tool-output-available")[0]["output"]["id"] == milk["id"]
    assert "Buy milk" in add.text

    call = await _say(client, user, chat_id, "add a task to call mum")
    turns.append(call)
    assert call.tool_names() == ["add_task"]
    tasks = await _tasks(client, user)
    assert sorted(task["title"] for task in tasks) == ["Buy milk", "Call mum"]
    mum = next(task for task in tasks if task["title"] == "Call mum")
    assert mum["due_at"] is None

    listing = await _say(client, user, chat_id, "what's on my list?")
    turns.append(listing)
    assert listing.tool_names() == ["list_tasks"]
    listed = listing.of_type("tool-output-available")[0]["output"]["items"]
    assert {item["id"] for item in listed} == {milk["id"], mum["id"]}
    assert "Buy milk" in listing.text
    assert "Call mum" in listing.text

    done = await _say(client, user, chat_id, "mark buy milk as done")
    turns.append(done)
    assert done.tool_names()[-1] == "complete_task"
    assert done.of_type("tool-input-available")[-1]["input"]["task_id"] == milk["id"]
    by_title = {task["title"]: task for task in await _tasks(client, user)}
    assert by_title["Buy milk"]["completed"] is True
    assert by_title["Buy milk"]["completed_at"] is not None
    assert by_title["Call mum"]["completed"] is False

    deleted = await _say(client, user, chat_id, "delete the milk task")
    turns.append(deleted)
    assert deleted.tool_names()[-1] == "delete_task"
    assert deleted.of_type("tool-input-available")[-1]["input"]["task_id"] == milk["id"]
    assert [task["title"] for task in await _tasks(client, user)] == ["Call mum"]
    gone = await client.get(f"/api/tasks/{milk['id']}", headers=user.headers)
    assert gone.status_code == 404

    hello = await _say(client, user, chat_id, "hello")
    turns.append(hello)
    assert hello.tool_names() == []
    assert "offline model" in hello.text
    assert "To chat with a real model" in hello.text
    assert "OPENAI_API_KEY" in hello.text

    # Reloaded, every reply is as it was streamed, tool calls and results included.
    messages = await _messages(client, user, chat_id)
    assert [m["role"] for m in messages] == ["user", "assistant"] * len(turns)
    replies = [m for m in messages if m["role"] == "assistant"]
    for message, turn in zip(replies, turns, strict=True):
        _assert_saved_like_its_stream(message, turn)
    assert sum(part["type"] == "tool_call" for m in replies for part in m["parts"]) >= 6
    chat = (await client.get(f"/api/chats/{chat_id}", headers=user.headers)).json()["data"]
    assert chat["title"] == "add a task to buy milk tomorrow"
    assert chat["current_leaf_id"] == replies[-1]["id"]

    # The other user's tasks of the same titles are untouched.
    theirs_now = await _tasks(client, other_user)
    assert sorted(task["title"] for task in theirs_now) == ["Buy milk", "Call mum"]
    assert all(task["completed"] is False for task in theirs_now)


async def test_the_offline_model_only_sees_its_own_users_tasks(
    client: httpx.AsyncClient, user: TestUser, other_user: TestUser
) -> None:
    theirs = await client.post(
        "/api/tasks", json={"title": "Water the plants"}, headers=other_user.headers
    )
    assert theirs.status_code == 201, theirs.text
    chat_id = await new_chat(client, user)

    listing = await _say(client, user, chat_id, "what's on my list?")
    assert listing.tool_names() == ["list_tasks"]
    assert listing.of_type("tool-output-available")[0]["output"]["items"] == []
    assert "Water the plants" not in listing.text

    for request in ("mark water the plants as done", "delete the plants task"):
        turn = await _say(client, user, chat_id, request)
        assert turn.tool_names()[0] == "list_tasks"
        assert "complete_task" not in turn.tool_names()
        assert "delete_task" not in turn.tool_names()
        assert "couldn't find" in turn.text
    plants = await _tasks(client, other_user)
    assert [(task["title"], task["completed"]) for task in plants] == [("Water the plants", False)]
    assert await _tasks(client, user) == []
