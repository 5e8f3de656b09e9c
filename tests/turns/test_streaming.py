"""The streaming turn against fake upstreams: text, tools over several steps, failures before and
during the stream, retries, timeouts, disconnect and resume, stop, and idempotent retries."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy import event, select, update

from parley.app import create_app
from parley.core.db import utcnow
from parley.turns.models import IDEMPOTENCY_WINDOW, IdempotencyRecord
from tests.fakes import Reply, ToolCall
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FaultyOpenAI
from tests.fixtures.accounts import TestUser
from tests.fixtures.catalogs import ANTHROPIC_MODEL, OPENAI_MODEL, upstream_settings
from tests.fixtures.chats import new_chat
from tests.fixtures.errors import assert_error
from tests.fixtures.polling import wait_for
from tests.fixtures.servers import LiveServer
from tests.fixtures.streams import chunk_types, parse_sse


async def _messages(http: httpx.AsyncClient, user: TestUser, chat_id: str) -> list[dict]:
    response = await http.get(f"/api/chats/{chat_id}/messages", headers=user.headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]["items"]  # type: ignore[no-any-return]


async def test_streams_text_and_saves_the_reply(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    upstream.script.push(Reply(text="Hello there, friend.", input_tokens=1000, output_tokens=500))
    chat_id = await new_chat(api, user)
    response = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Hi!"}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.headers["cache-control"] == "no-cache"
    assert len(response.headers["x-trace-id"]) == 32
    events = parse_sse(response.text)
    assert [event.id for event in events] == list(range(1, len(events) + 1))
    assert events[-1].data == "[DONE]"
    types = chunk_types(events)
    assert types[0] == "start"
    assert types[-1] == "finish"
    assert "message-metadata" in types
    start = events[0].chunk
    assert start["messageMetadata"]["chat_id"] == chat_id
    text = "".join(e.chunk["delta"] for e in events[:-1] if e.chunk["type"] == "text-delta")
    assert text == "Hello there, friend."

    messages = await _messages(api, user, chat_id)
    assert [m["role"] for m in messages] == ["user", "assistant"]
    reply = messages[1]
    assert reply["id"] == start["messageId"]
    assert messages[0]["id"] == start["messageMetadata"]["user_message_id"]
    assert reply["status"] == "complete"
    assert reply["parts"] == [{"type": "text", "text": "Hello there, friend."}]
    assert reply["model_id"] == OPENAI_MODEL
    assert reply["usage"]["input_tokens"] == 1000
    assert reply["usage"]["output_tokens"] == 500
    assert abs(reply["usage"]["cost_usd"] - (1000 * 2.0 + 500 * 8.0) / 1_000_000) < 1e-9
    assert reply["usage"]["duration_ms"] >= 0
    assert reply["usage"]["time_to_first_token_ms"] is not None
    chat = (await api.get(f"/api/chats/{chat_id}", headers=user.headers)).json()["data"]
    assert chat["current_leaf_id"] == reply["id"]
    assert chat["title"] == "Hi!"
    request = upstream.script.completions("/chat/completions")[0].body
    assert request is not None
    assert request["stream"] is True
    assert request["messages"][-1] == {"role": "user", "content": "Hi!"}


async def test_a_server_chunk_off_openais_schema_still_streams(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    """Chunks are validated by pydantic-core (parley.llm.openai_client); one the schema refuses,
    here a finish reason of the server's own, is built leniently as the SDK does."""
    upstream.script.push(Reply(text="Made by llama.", finish_reason="eos"))
    chat_id = await new_chat(api, user)
    response = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Hi!"}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    events = parse_sse(response.text)
    text = "".join(e.chunk["delta"] for e in events[:-1] if e.chunk["type"] == "text-delta")
    assert text == "Made by llama."
    assert chunk_types(events)[-1] == "finish"
    reply = (await _messages(api, user, chat_id))[1]
    assert reply["status"] == "complete"
    assert reply["parts"] == [{"type": "text", "text": "Made by llama."}]


async def test_tool_calls_over_several_steps(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    upstream.script.push(
        Reply(tool_calls=(ToolCall("add_task", {"title": "Buy milk"}, id="call_a"),)),
        Reply(tool_calls=(ToolCall("list_tasks", {}, id="call_b"),)),
        Reply(text="You have one task: Buy milk."),
    )
    chat_id = await new_chat(api, user, system_prompt="You manage tasks.")
    response = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Add milk"}, headers=user.headers
    )
    types = chunk_types(parse_sse(response.text))
    assert types.count("start-step") == 3
    assert types.count("tool-input-available") == 2
    assert types.count("tool-output-available") == 2
    tasks = (await api.get("/api/tasks", headers=user.headers)).json()["data"]["items"]
    assert [task["title"] for task in tasks] == ["Buy milk"]

    reply = (await _messages(api, user, chat_id))[-1]
    kinds = [part["type"] for part in reply["parts"]]
    assert kinds == ["tool_call", "tool_result", "tool_call", "tool_result", "text"]
    assert reply["parts"][1]["output"]["title"] == "Buy milk"
    assert reply["parts"][3]["output"]["items"][0]["title"] == "Buy milk"
    requests = upstream.script.completions("/chat/completions")
    assert len(requests) == 3
    first = requests[0].body or {}
    assert first["messages"][0]["content"] == "You manage tasks."
    assert {tool["function"]["name"] for tool in first["tools"]} >= {"add_task", "list_tasks"}
    last = requests[2].body or {}
    assert [m["role"] for m in last["messages"]][-4:] == ["assistant", "tool", "assistant", "tool"]

    # The next turn's context carries the earlier tool calls and their results.
    upstream.script.push(Reply(text="Noted."))
    await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Thanks"}, headers=user.headers
    )
    history = upstream.script.completions("/chat/completions")[-1].body or {}
    roles = [m["role"] for m in history["messages"]]
    assert roles == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
        "user",
    ]


async def test_a_tool_refusal_goes_back_to_the_model(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    upstream.script.push(
        Reply(
            tool_calls=(ToolCall("get_task", {"task_id": "01890000-0000-7000-8000-000000000000"}),)
        ),
        Reply(text="That task does not exist."),
    )
    chat_id = await new_chat(api, user)
    response = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Show it"}, headers=user.headers
    )
    types = chunk_types(parse_sse(response.text))
    assert "tool-output-error" in types
    assert types[-1] == "finish"
    reply = (await _messages(api, user, chat_id))[-1]
    assert reply["status"] == "complete"
    result = next(part for part in reply["parts"] if part["type"] == "tool_result")
    assert result["is_error"] is True


async def test_upstream_500_before_the_stream(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    upstream.script.push(*(Reply(status=500) for _ in range(3)))
    chat_id = await new_chat(api, user)
    response = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Hi"}, headers=user.headers
    )
    assert response.status_code == 200
    events = parse_sse(response.text)
    error = next(e.chunk for e in events[:-1] if e.chunk["type"] == "error")
    assert "scripted failure" not in error["errorText"]
    assert events[-1].data == "[DONE]"
    assert len(upstream.script.completions("/chat/completions")) == 3  # the first and 2 retries
    reply = (await _messages(api, user, chat_id))[-1]
    assert reply["status"] == "error"
    assert reply["error"]["code"] in ("provider_error", "provider_unavailable")
    # The chat is free again.
    upstream.script.push(Reply(text="Better now."))
    again = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Again"}, headers=user.headers
    )
    assert chunk_types(parse_sse(again.text))[-1] == "finish"


async def test_429_then_success_is_retried(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    upstream.script.push(Reply(status=429, error_message="slow down"), Reply(text="Made it."))
    chat_id = await new_chat(api, user)
    response = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Hi"}, headers=user.headers
    )
    assert chunk_types(parse_sse(response.text))[-1] == "finish"
    assert len(upstream.script.completions("/chat/completions")) == 2
    reply = (await _messages(api, user, chat_id))[-1]
    assert reply["status"] == "complete"
    assert reply["parts"] == [{"type": "text", "text": "Made it."}]


async def test_upstream_failure_during_the_stream_keeps_the_partial_text(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    upstream.cut_after_chunks = 4  # the role chunk and three words, then the connection drops
    upstream.script.push(Reply(text="one two three four five six seven"))
    chat_id = await new_chat(api, user)
    response = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Count"}, headers=user.headers
    )
    events = parse_sse(response.text)
    types = chunk_types(events)
    assert "error" in types
    assert events[-1].data == "[DONE]"
    reply = (await _messages(api, user, chat_id))[-1]
    assert reply["status"] == "error"
    assert reply["parts"] == [{"type": "text", "text": "one two three"}]
    assert reply["error"]["code"] in ("provider_unavailable", "provider_error")


async def test_upstream_that_never_answers_times_out(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    # No answer within the read timeout (2 s here), three times (the first try and 2 retries).
    upstream.script.push(*(Reply(text="never", delay=30) for _ in range(3)))
    chat_id = await new_chat(api, user)
    started = time.monotonic()
    response = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Hi"}, headers=user.headers
    )
    assert time.monotonic() - started < 25
    assert "error" in chunk_types(parse_sse(response.text))
    reply = (await _messages(api, user, chat_id))[-1]
    assert reply["status"] == "error"
    assert reply["error"]["code"] == "provider_timeout"


async def test_upstream_stalling_mid_stream_times_out_and_keeps_the_text(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    upstream.stall_after_chunks = 3  # the role chunk and two words, then silence
    upstream.script.push(Reply(text="first second third fourth"))
    chat_id = await new_chat(api, user)
    response = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Hi"}, headers=user.headers
    )
    events = parse_sse(response.text)
    assert "error" in chunk_types(events)
    assert events[-1].data == "[DONE]"
    reply = (await _messages(api, user, chat_id))[-1]
    assert reply["status"] == "error"
    assert reply["error"]["code"] == "provider_timeout"
    assert reply["parts"] == [{"type": "text", "text": "first second"}]
    assert len(upstream.script.completions("/chat/completions")) == 1  # no retry mid-stream


async def test_disconnect_then_resume_then_the_reply_is_saved(
    upstream_live: LiveServer, upstream_app: FastAPI, user: TestUser, upstream: FaultyOpenAI
) -> None:
    # Replies that earlier tests left running (a client that went away) end first: the count of
    # upstream streams read to their end below is this test's alone.
    async def no_reply_running() -> bool:
        return not any(
            app.state.turn_runner._by_message for app in (upstream_live.app, upstream_app)
        )

    await wait_for(no_reply_running, within=30)
    upstream.finished_at.clear()
    words = " ".join(f"w{i}" for i in range(60))
    upstream.script.push(Reply(text=words, chunk_delay=0.03))
    async with httpx.AsyncClient(base_url=upstream_live.url, timeout=30) as http:
        chat_id = await new_chat(http, user)
        seen: list[int] = []
        async with http.stream(
            "POST", f"/api/chats/{chat_id}/messages", json={"content": "Go"}, headers=user.headers
        ) as response:
            async for line in response.aiter_lines():
                if line.startswith("id: "):
                    seen.append(int(line[4:]))
                if len(seen) >= 5:
                    break  # the client goes away mid-reply: the connection is closed
        assert seen == [1, 2, 3, 4, 5]
        reply = (await _messages(http, user, chat_id))[-1]
        assert reply["status"] == "streaming"
        resumed = await http.get(
            f"/api/chats/{chat_id}/stream", headers={**user.headers, "Last-Event-ID": "5"}
        )
        assert resumed.status_code == 200
        events = parse_sse(resumed.text)
        assert events[0].id == 6
        assert events[-1].data == "[DONE]"
        assert chunk_types(events)[-1] == "finish"
        reply = (await _messages(http, user, chat_id))[-1]
        assert reply["status"] == "complete"
        assert reply["parts"] == [{"type": "text", "text": words}]
        done = await http.get(f"/api/chats/{chat_id}/stream", headers=user.headers)
        assert done.status_code == 204
    assert len(upstream.finished_at) == 1  # the upstream was read to its end, once


async def test_resume_replays_from_the_start(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    upstream.script.push(Reply(text="a b c d e f g h", chunk_delay=0.05))
    chat_id = await new_chat(api, user)
    first = asyncio.create_task(
        api.post(f"/api/chats/{chat_id}/messages", json={"content": "Go"}, headers=user.headers)
    )

    async def in_progress() -> httpx.Response | None:
        response = await api.get(f"/api/chats/{chat_id}/stream", headers=user.headers)
        return response if response.status_code == 200 else None

    resumed = await wait_for(in_progress)
    original = await first
    assert parse_sse(resumed.text) == parse_sse(original.text)


async def test_stop_closes_the_upstream_and_keeps_the_partial_reply(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    upstream.script.push(Reply(text=" ".join(["word"] * 400), chunk_delay=0.02))
    chat_id = await new_chat(api, user)
    stream_task = asyncio.create_task(
        api.post(f"/api/chats/{chat_id}/messages", json={"content": "Go"}, headers=user.headers)
    )

    async def some_text() -> bool:
        messages = await _messages(api, user, chat_id)
        parts = messages[-1]["parts"] if len(messages) == 2 else []
        return bool(parts)

    await wait_for(some_text)
    stopped_at = time.monotonic()
    stop = await api.post(f"/api/chats/{chat_id}/stop", headers=user.headers)
    assert stop.status_code == 204
    await wait_for(lambda: asyncio.sleep(0, upstream.hung_up_at), within=5)
    assert upstream.hung_up_at[0] - stopped_at < 1.0
    assert upstream.finished_at == []

    response = await stream_task
    events = parse_sse(response.text)
    types = chunk_types(events)
    assert "abort" in types
    assert "finish" not in types
    assert events[-1].data == "[DONE]"
    reply = (await _messages(api, user, chat_id))[-1]
    assert reply["status"] == "cancelled"
    text = reply["parts"][0]["text"]
    assert 0 < len(text.split()) < 400
    assert reply["usage"]["output_tokens"] > 0
    again = await api.post(f"/api/chats/{chat_id}/stop", headers=user.headers)
    assert_error(again, 409, "no_active_stream")


async def test_one_reply_at_a_time_per_chat(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    upstream.script.push(Reply(text=" ".join(["x"] * 50), chunk_delay=0.02))
    chat_id = await new_chat(api, user)
    first = asyncio.create_task(
        api.post(f"/api/chats/{chat_id}/messages", json={"content": "One"}, headers=user.headers)
    )

    async def busy() -> bool:
        chat = (await api.get(f"/api/chats/{chat_id}", headers=user.headers)).json()["data"]
        return chat["current_leaf_id"] is not None

    await wait_for(busy)
    second = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Two"}, headers=user.headers
    )
    assert_error(second, 409, "conflict")
    await first
    messages = await _messages(api, user, chat_id)
    assert [m["parts"][0]["text"] for m in messages if m["role"] == "user"] == ["One"]


async def test_idempotent_retry_makes_one_message_and_one_upstream_call(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    upstream.script.push(Reply(text="Only once."))
    chat_id = await new_chat(api, user)
    headers = {**user.headers, "Idempotency-Key": "send-1"}
    first = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Hello"}, headers=headers
    )
    retry = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Hello"}, headers=headers
    )
    assert retry.status_code == 200
    first_events, retry_events = parse_sse(first.text), parse_sse(retry.text)
    assert retry_events[0].chunk["messageId"] == first_events[0].chunk["messageId"]
    assert chunk_types(retry_events)[-1] == "finish"
    as_json = await api.post(
        f"/api/chats/{chat_id}/messages?stream=false", json={"content": "Hello"}, headers=headers
    )
    assert as_json.status_code == 201
    assert as_json.json()["data"]["assistant_message"]["id"] == first_events[0].chunk["messageId"]
    assert len(upstream.script.completions("/chat/completions")) == 1
    messages = await _messages(api, user, chat_id)
    assert len(messages) == 2

    reused = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Different"}, headers=headers
    )
    assert_error(reused, 422, "idempotency_key_reused")
    too_long = await api.post(
        f"/api/chats/{chat_id}/messages",
        json={"content": "x"},
        headers={**user.headers, "Idempotency-Key": "k" * 256},
    )
    assert_error(too_long, 422, "validation_error")


async def test_an_expired_idempotency_key_starts_a_new_turn_writing_only_after_its_reads(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI, upstream_app: FastAPI
) -> None:
    """A key older than the idempotency window is free again: the same key with another body
    starts a new turn. The old record is replaced in the turn's write transaction, after the
    turn's reads: on SQLite the first write takes the one write lock until the commit, and
    deleting it on sight held that lock through the branch's read and the planning."""
    upstream.script.push(Reply(text="First."))
    upstream.script.push(Reply(text="Second."))
    chat_id = await new_chat(api, user)
    headers = {**user.headers, "Idempotency-Key": "daily"}
    first = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Hi"}, headers=headers
    )
    assert first.status_code == 200, first.text
    async with upstream_app.state.database.sessionmaker() as session:
        aged = utcnow() - IDEMPOTENCY_WINDOW - timedelta(minutes=1)
        await session.execute(
            update(IdempotencyRecord)
            .where(IdempotencyRecord.user_id == uuid.UUID(user.id))
            .values(created_at=aged)
        )
        await session.commit()
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        statements.append(" ".join(statement.split()).upper())

    engine = upstream_app.state.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        second = await api.post(
            f"/api/chats/{chat_id}/messages", json={"content": "Again"}, headers=headers
        )
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert second.status_code == 200, second.text
    first_id = parse_sse(first.text)[0].chunk["messageId"]
    second_id = parse_sse(second.text)[0].chunk["messageId"]
    assert second_id != first_id
    writes = [
        i for i, sql in enumerate(statements) if sql.startswith(("INSERT", "UPDATE", "DELETE"))
    ]
    branch_read = max(i for i, sql in enumerate(statements) if "WITH RECURSIVE PATH" in sql)
    assert statements[writes[0]].startswith("DELETE FROM IDEMPOTENCY_KEYS")
    assert writes[0] > branch_read
    messages = await _messages(api, user, chat_id)
    assert [m["parts"][0]["text"] for m in messages if m["role"] == "user"] == ["Hi", "Again"]
    async with upstream_app.state.database.sessionmaker() as session:
        kept = (
            (
                await session.execute(
                    select(IdempotencyRecord).where(IdempotencyRecord.user_id == uuid.UUID(user.id))
                )
            )
            .scalars()
            .all()
        )
    assert [str(r.assistant_message_id) for r in kept] == [second_id]


async def test_stream_false_answers_with_both_messages(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    upstream.script.push(Reply(text="Plain answer."))
    chat_id = await new_chat(api, user)
    response = await api.post(
        f"/api/chats/{chat_id}/messages?stream=false",
        json={"parts": [{"type": "text", "text": "Question?"}]},
        headers=user.headers,
    )
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    assert data["user_message"]["parts"] == [{"type": "text", "text": "Question?"}]
    assert data["assistant_message"]["status"] == "complete"
    assert data["assistant_message"]["parts"] == [{"type": "text", "text": "Plain answer."}]


async def test_anthropic_upstream_streams_and_calls_tools(
    api: httpx.AsyncClient, user: TestUser, anthropic_upstream: FakeAnthropic
) -> None:
    anthropic_upstream.script.push(
        Reply(tool_calls=(ToolCall("add_task", {"title": "Call mum"}, id="toolu_1"),)),
        Reply(text="Added it."),
    )
    chat_id = await new_chat(api, user, model_id=ANTHROPIC_MODEL)
    response = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Remind me"}, headers=user.headers
    )
    types = chunk_types(parse_sse(response.text))
    assert "tool-output-available" in types
    assert types[-1] == "finish"
    reply = (await _messages(api, user, chat_id))[-1]
    assert reply["model_id"] == ANTHROPIC_MODEL
    assert reply["parts"][-1] == {"type": "text", "text": "Added it."}
    assert len(anthropic_upstream.script.completions("/v1/messages")) == 2


async def test_bad_sends_are_enveloped_errors(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI, upstream_app: FastAPI
) -> None:
    chat_id = await new_chat(api, user)
    url = f"/api/chats/{chat_id}/messages"
    for body in (
        {},
        {"content": ""},
        {"content": "a", "parts": [{"type": "text", "text": "b"}]},
        {"parts": [{"type": "tool_call", "tool_call_id": "x", "tool_name": "y", "input": {}}]},
        {"content": "nul \u0000"},
        {"content": "hi", "model_id": "nope:none"},
        {"content": "hi", "role": "assistant"},
    ):
        response = await api.post(url, json=body, headers=user.headers)
        assert_error(response, 422, "validation_error")
    unknown_parent = await api.post(
        url,
        json={"content": "hi", "parent_id": "01890000-0000-7000-8000-000000000000"},
        headers=user.headers,
    )
    assert_error(unknown_parent, 404, "not_found")
    assert upstream.script.requests == []
    assert await _messages(api, user, chat_id) == []


async def test_concurrent_retries_with_one_key_share_one_turn(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    upstream.script.push(Reply(text="Once, for both."))
    chat_id = await new_chat(api, user)
    other_chat = await new_chat(api, user)
    headers = {**user.headers, "Idempotency-Key": "racing"}
    answers = await asyncio.gather(
        *(
            api.post(
                f"/api/chats/{chat_id}/messages?stream=false",
                json={"content": "Same"},
                headers=headers,
            )
            for _ in range(3)
        )
    )
    assert [answer.status_code for answer in answers] == [201, 201, 201], [
        answer.text for answer in answers
    ]
    ids = {answer.json()["data"]["assistant_message"]["id"] for answer in answers}
    assert len(ids) == 1
    assert len(upstream.script.completions("/chat/completions")) == 1
    elsewhere = await api.post(
        f"/api/chats/{other_chat}/messages", json={"content": "Same"}, headers=headers
    )
    assert_error(elsewhere, 422, "idempotency_key_reused")


async def test_the_fallback_model_answers_when_the_first_fails(
    database_url: str,
    tmp_path: Path,
    fake_upstreams: tuple[FaultyOpenAI, FakeAnthropic],
    upstream: FaultyOpenAI,
    anthropic_upstream: FakeAnthropic,
    user: TestUser,
) -> None:
    settings = upstream_settings(
        database_url, tmp_path, fake_upstreams, fallback_model=ANTHROPIC_MODEL
    )
    upstream.script.push(*(Reply(status=503) for _ in range(3)))
    anthropic_upstream.script.push(Reply(text="Claude here.", input_tokens=100, output_tokens=10))
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            chat_id = await new_chat(http, user)
            response = await http.post(
                f"/api/chats/{chat_id}/messages?stream=false",
                json={"content": "Anyone?"},
                headers=user.headers,
            )
    assert response.status_code == 201, response.text
    reply = response.json()["data"]["assistant_message"]
    assert reply["status"] == "complete"
    assert reply["parts"] == [{"type": "text", "text": "Claude here."}]
    assert reply["model_id"] == ANTHROPIC_MODEL
    assert abs(reply["usage"]["cost_usd"] - (100 * 3.0 + 10 * 15.0) / 1_000_000) < 1e-9
    requests = upstream.script.completions("/chat/completions")
    assert len(requests) == 3
    # With a fallback, the first model is Pydantic AI's (through the `openai` SDK), which
    # `FallbackModel` tries first.
    assert all("x-stainless-lang" in request.headers for request in requests)


_REFUSE_COMPLETE = {
    "sqlite": [
        "CREATE TRIGGER refuse_complete BEFORE UPDATE OF status ON messages "
        "WHEN NEW.status = 'complete' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_complete() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
        "CREATE TRIGGER refuse_complete BEFORE UPDATE OF status ON messages FOR EACH ROW "
        "WHEN (NEW.status = 'complete') EXECUTE FUNCTION refuse_complete()",
    ],
}
_ALLOW_COMPLETE = {
    "sqlite": ["DROP TRIGGER IF EXISTS refuse_complete"],
    "postgresql": [
        "DROP TRIGGER IF EXISTS refuse_complete ON messages",
        "DROP FUNCTION IF EXISTS refuse_complete()",
    ],
}


async def test_a_reply_whose_final_save_fails_never_says_it_finished(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI, upstream_app: FastAPI
) -> None:
    """The database refuses the reply's final save (a trigger here): the client must not be told
    `finish` first. The stream ends with an error, and the reply is kept as an error with its
    text."""
    engine = upstream_app.state.database.engine
    dialect = engine.dialect.name

    async def run(statements: list[str]) -> None:
        async with engine.begin() as connection:
            for statement in statements:
                await connection.exec_driver_sql(statement)

    upstream.script.push(Reply(text="Saved or not, here it is."))
    chat_id = await new_chat(api, user)
    await run(_REFUSE_COMPLETE[dialect])
    try:
        response = await api.post(
            f"/api/chats/{chat_id}/messages", json={"content": "Hi!"}, headers=user.headers
        )
    finally:
        await run(_ALLOW_COMPLETE[dialect])
    events = parse_sse(response.text)
    types = chunk_types(events)
    assert events[-1].data == "[DONE]"
    assert "error" in types, types
    assert "finish" not in types[: types.index("error")], types
    reply = (await _messages(api, user, chat_id))[-1]
    assert reply["status"] == "error"
    assert reply["parts"] == [{"type": "text", "text": "Saved or not, here it is."}]
    assert reply["error"]["code"] == "internal_error"
