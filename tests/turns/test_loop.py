"""The reply's agent loop (`parley.turns.loop`) through the HTTP API against the fake OpenAI
upstream: the order of the stream's chunks, the step limit, calls the tools cannot run, and how a
reply that fails or stops ends its open parts."""

from __future__ import annotations

import asyncio
import json

import httpx

from tests.fakes import Reply, ToolCall
from tests.fakes.openai_upstream import FaultyOpenAI
from tests.fixtures.accounts import TestUser
from tests.fixtures.chats import new_chat
from tests.fixtures.polling import wait_for
from tests.fixtures.streams import chunk_types, parse_sse

MAX_STEPS = 8  # AGENT_MAX_STEPS's default, which the upstream app keeps


async def _last_message(api: httpx.AsyncClient, user: TestUser, chat_id: str) -> dict:
    response = await api.get(f"/api/chats/{chat_id}/messages", headers=user.headers)
    assert response.status_code == 200, response.text
    return response.json()["data"]["items"][-1]  # type: ignore[no-any-return]


def _collapsed(types: list[str]) -> list[str]:
    """Runs of the same delta type as one."""
    collapsed: list[str] = []
    for kind in types:
        if not (collapsed and collapsed[-1] == kind and kind.endswith("-delta")):
            collapsed.append(kind)
    return collapsed


async def test_a_reply_with_a_tool_call_streams_in_protocol_order(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    upstream.script.push(
        Reply(text="Let me add it.", tool_calls=(ToolCall("add_task", {"title": "Tea"}),)),
        Reply(text="Added."),
    )
    chat_id = await new_chat(api, user)
    response = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Add tea"}, headers=user.headers
    )
    events = parse_sse(response.text)
    assert _collapsed(chunk_types(events)) == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "tool-input-start",
        "tool-input-delta",
        "tool-input-available",
        "tool-output-available",
        "finish-step",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "finish-step",
        "message-metadata",
        "finish",
    ]
    chunks = [event.chunk for event in events[:-1]]
    streamed_input = "".join(
        chunk["inputTextDelta"] for chunk in chunks if chunk["type"] == "tool-input-delta"
    )
    assert json.loads(streamed_input) == {"title": "Tea"}
    available = next(chunk for chunk in chunks if chunk["type"] == "tool-input-available")
    assert available["toolName"] == "add_task"
    assert available["input"] == {"title": "Tea"}
    output = next(chunk for chunk in chunks if chunk["type"] == "tool-output-available")
    assert output["toolCallId"] == available["toolCallId"]
    assert output["output"]["title"] == "Tea"
    assert chunks[-1]["finishReason"] == "stop"
    usage = next(chunk for chunk in chunks if chunk["type"] == "message-metadata")
    # Both steps' tokens: 11 in and 7 out each, as the fake reports them.
    assert usage["messageMetadata"]["usage"]["input_tokens"] == 22
    assert usage["messageMetadata"]["usage"]["output_tokens"] == 14
    reply = await _last_message(api, user, chat_id)
    assert [part["type"] for part in reply["parts"]] == ["text", "tool_call", "tool_result", "text"]
    assert reply["usage"]["input_tokens"] == 22


async def test_a_reply_that_calls_tools_at_every_step_ends_at_the_step_limit(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    upstream.script.push(
        *(Reply(tool_calls=(ToolCall("list_tasks", {}, id=f"call_{n}"),)) for n in range(10))
    )
    chat_id = await new_chat(api, user)
    response = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Loop"}, headers=user.headers
    )
    types = chunk_types(parse_sse(response.text))
    assert types.count("start-step") == MAX_STEPS
    assert types.count("tool-output-available") == MAX_STEPS
    assert types[-4:] == ["finish-step", "message-metadata", "error", "finish"]
    assert len(upstream.script.completions("/chat/completions")) == MAX_STEPS
    reply = await _last_message(api, user, chat_id)
    assert reply["status"] == "error"
    assert reply["error"]["code"] == "step_limit"
    assert [part["type"] for part in reply["parts"]] == ["tool_call", "tool_result"] * MAX_STEPS


async def test_calls_the_tools_cannot_run_go_back_to_the_model_as_failures(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    upstream.script.push(
        Reply(
            tool_calls=(
                ToolCall("launch_rocket", {}, id="call_unknown"),
                ToolCall("add_task", '{"title": "Half', id="call_broken"),
                ToolCall("add_task", {"title": ""}, id="call_invalid"),
            )
        ),
        Reply(text="I could not do that."),
    )
    chat_id = await new_chat(api, user)
    response = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Do things"}, headers=user.headers
    )
    chunks = [event.chunk for event in parse_sse(response.text)[:-1]]
    errors = {c["toolCallId"]: c["errorText"] for c in chunks if c["type"] == "tool-output-error"}
    assert set(errors) == {"call_unknown", "call_broken", "call_invalid"}
    assert "launch_rocket" in errors["call_unknown"]
    assert "JSON" in errors["call_broken"]
    assert "title" in errors["call_invalid"]
    assert chunks[-1]["type"] == "finish"
    # The model got each failure as that call's result.
    second = upstream.script.completions("/chat/completions")[1].body or {}
    results = {m["tool_call_id"]: m["content"] for m in second["messages"] if m["role"] == "tool"}
    assert set(results) == set(errors)
    for call_id, text in errors.items():
        assert text in results[call_id]
    tasks = (await api.get("/api/tasks", headers=user.headers)).json()["data"]["items"]
    assert tasks == []
    reply = await _last_message(api, user, chat_id)
    assert reply["status"] == "complete"
    failed = [part for part in reply["parts"] if part["type"] == "tool_result"]
    assert [part["is_error"] for part in failed] == [True, True, True]


async def test_a_failure_mid_text_ends_the_text_before_the_error(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    upstream.cut_after_chunks = 3
    upstream.script.push(Reply(text="alpha beta gamma delta"))
    chat_id = await new_chat(api, user)
    response = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Go"}, headers=user.headers
    )
    types = _collapsed(chunk_types(parse_sse(response.text)))
    assert types == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "finish-step",
        "message-metadata",
        "error",
        "finish",
    ]
    reply = await _last_message(api, user, chat_id)
    assert reply["status"] == "error"
    assert reply["parts"] == [{"type": "text", "text": "alpha beta"}]
    # No usage report came: the tokens are estimated from what was sent and streamed.
    assert reply["usage"]["output_tokens"] > 0


async def test_a_stopped_reply_ends_its_text_then_aborts(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    upstream.script.push(Reply(text=" ".join(["word"] * 300), chunk_delay=0.02))
    chat_id = await new_chat(api, user)
    streaming = asyncio.create_task(
        api.post(f"/api/chats/{chat_id}/messages", json={"content": "Go"}, headers=user.headers)
    )

    async def some_text() -> bool:
        response = await api.get(f"/api/chats/{chat_id}/messages", headers=user.headers)
        items = response.json()["data"]["items"]
        return len(items) == 2 and bool(items[-1]["parts"])

    await wait_for(some_text)
    stop = await api.post(f"/api/chats/{chat_id}/stop", headers=user.headers)
    assert stop.status_code == 204
    types = _collapsed(chunk_types(parse_sse((await streaming).text)))
    assert types == [
        "start",
        "start-step",
        "text-start",
        "text-delta",
        "text-end",
        "finish-step",
        "message-metadata",
        "abort",
    ]
    reply = await _last_message(api, user, chat_id)
    assert reply["status"] == "cancelled"


async def test_an_openai_compatible_server_is_streamed_without_the_sdk(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    """The fake is not OpenAI's own host: the step goes through the relay, not the `openai` SDK
    (which sends its `x-stainless-*` headers), and still asks for the usage chunk."""
    upstream.script.push(Reply(text="Plain.", input_tokens=40, output_tokens=3))
    chat_id = await new_chat(api, user, system_prompt="Be brief.")
    response = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Hi"}, headers=user.headers
    )
    assert chunk_types(parse_sse(response.text))[-1] == "finish"
    request = upstream.script.completions("/chat/completions")[0]
    assert not any(name.startswith("x-stainless") for name in request.headers)
    assert request.headers["authorization"] == "Bearer sk-test"
    body = request.body or {}
    assert body["model"] == "gpt-fake-large"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]
    assert {tool["function"]["name"] for tool in body["tools"]} >= {"add_task", "list_tasks"}
    reply = await _last_message(api, user, chat_id)
    assert reply["usage"]["input_tokens"] == 40
    assert reply["usage"]["output_tokens"] == 3


async def test_streamed_reasoning_is_a_reasoning_part(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    upstream.script.push(Reply(reasoning="Think it over.", text="Answer."))
    chat_id = await new_chat(api, user)
    response = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Why?"}, headers=user.headers
    )
    events = parse_sse(response.text)
    assert _collapsed(chunk_types(events)) == [
        "start",
        "start-step",
        "reasoning-start",
        "reasoning-delta",
        "reasoning-end",
        "text-start",
        "text-delta",
        "text-end",
        "finish-step",
        "message-metadata",
        "finish",
    ]
    reply = await _last_message(api, user, chat_id)
    assert reply["parts"] == [
        {"type": "reasoning", "text": "Think it over."},
        {"type": "text", "text": "Answer."},
    ]
    # The next turn sends the text back, not the reasoning.
    upstream.script.push(Reply(text="Again."))
    await api.post(f"/api/chats/{chat_id}/messages", json={"content": "And?"}, headers=user.headers)
    history = upstream.script.completions("/chat/completions")[-1].body or {}
    assert {"role": "assistant", "content": "Answer."} in history["messages"]
