"""`/v1/chat/completions` on the offline model, through the official `openai` SDK: plain and
streamed answers, a tool-call round trip with an `add_task` tool, and the usage each call
records."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from tests.fixtures.accounts import TestUser
from tests.fixtures.catalogs import OFFLINE_MODEL
from tests.fixtures.gateway import sdk, usage_records
from tests.fixtures.servers import LiveServer

ADD_TASK_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "add_task",
        "description": "Add a task to the user's list.",
        "parameters": {
            "type": "object",
            "properties": {"title": {"type": "string"}, "due_at": {"type": "string"}},
            "required": ["title"],
        },
    },
}


async def test_plain_completion(
    oai: openai.AsyncOpenAI, client: httpx.AsyncClient, user: TestUser
) -> None:
    completion = await oai.chat.completions.create(
        model=OFFLINE_MODEL,
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "hello there"},
        ],
    )
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == OFFLINE_MODEL
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.role == "assistant"
    assert "offline model" in (choice.message.content or "")
    assert choice.message.tool_calls is None
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    [record] = await usage_records(client, user, expected=1)
    assert record["model_id"] == OFFLINE_MODEL
    assert record["status"] == "complete"
    assert record["input_tokens"] == completion.usage.prompt_tokens
    assert record["output_tokens"] == completion.usage.completion_tokens
    assert record["cost_usd"] == 0
    assert record["api_key_id"] is not None
    assert record["latency_ms"] is not None


async def test_text_content_parts_are_accepted(oai: openai.AsyncOpenAI) -> None:
    completion = await oai.chat.completions.create(
        model=OFFLINE_MODEL,
        messages=[
            {"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": [{"type": "text", "text": "what's on my list?"}]},
        ],
    )
    # Without tools, the offline model cannot list; it answers in words.
    assert completion.choices[0].message.content


async def test_streamed_completion_with_usage(
    oai: openai.AsyncOpenAI, client: httpx.AsyncClient, user: TestUser
) -> None:
    stream = await oai.chat.completions.create(
        model=OFFLINE_MODEL,
        messages=[{"role": "user", "content": "hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert "offline model" in text
    assert len([chunk for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]) > 3
    finishing = [chunk for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert [chunk.choices[0].finish_reason for chunk in finishing] == ["stop"]
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens > 0
    assert all(chunk.id == chunks[0].id for chunk in chunks)
    [record] = await usage_records(client, user, expected=1)
    assert record["status"] == "complete"
    assert record["output_tokens"] == last.usage.completion_tokens


async def test_stream_without_usage_has_no_usage_chunk(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model=OFFLINE_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)


async def test_tool_call_round_trip(oai: openai.AsyncOpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "add a task to buy milk tomorrow"}]
    first = await oai.chat.completions.create(
        model=OFFLINE_MODEL, messages=messages, tools=[ADD_TASK_TOOL]
    )
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    [call] = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.function.name == "add_task"
    arguments = json.loads(call.function.arguments)
    assert arguments["title"] == "Buy milk"
    # The caller runs the tool and sends its result back, as any OpenAI client does.
    messages += [
        choice.message.model_dump(exclude_none=True),
        {
            "role": "tool",
            "tool_call_id": call.id,
            "content": json.dumps({"id": "t1", "title": "Buy milk", "completed": False}),
        },
    ]
    second = await oai.chat.completions.create(
        model=OFFLINE_MODEL, messages=messages, tools=[ADD_TASK_TOOL]
    )
    assert second.choices[0].finish_reason == "stop"
    assert "Buy milk" in (second.choices[0].message.content or "")


async def test_streamed_tool_call(oai: openai.AsyncOpenAI) -> None:
    stream = await oai.chat.completions.create(
        model=OFFLINE_MODEL,
        messages=[{"role": "user", "content": "add a task to call mom"}],
        tools=[ADD_TASK_TOOL],
        stream=True,
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    async for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or ():
            entry = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += delta.id or ""
            if delta.function is not None:
                entry["name"] += delta.function.name or ""
                entry["arguments"] += delta.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert list(calls) == [0]
    assert calls[0]["name"] == "add_task"
    assert calls[0]["id"]
    assert json.loads(calls[0]["arguments"])["title"] == "Call mom"


async def test_tool_choice_none_keeps_the_offline_model_from_calling_tools(
    oai: openai.AsyncOpenAI,
) -> None:
    completion = await oai.chat.completions.create(
        model=OFFLINE_MODEL,
        messages=[{"role": "user", "content": "add a task to buy milk"}],
        tools=[ADD_TASK_TOOL],
        tool_choice="none",
    )
    assert completion.choices[0].message.tool_calls is None
    assert completion.choices[0].finish_reason == "stop"


async def test_tool_result_without_its_call_is_a_400(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.chat.completions.create(
            model=OFFLINE_MODEL,
            messages=[
                {"role": "user", "content": "hi"},
                {"role": "tool", "tool_call_id": "call_nowhere", "content": "{}"},
            ],
        )
    assert caught.value.param == "messages[1].tool_call_id"


async def test_image_content_is_refused_by_a_translated_model(oai: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.chat.completions.create(
            model=OFFLINE_MODEL,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
                    ],
                }
            ],
        )
    assert caught.value.param == "messages[0].content[0].type"


async def test_each_user_sees_only_their_own_usage(
    gateway_live: LiveServer,
    client: httpx.AsyncClient,
    oai: openai.AsyncOpenAI,
    user: TestUser,
    other_user: TestUser,
) -> None:
    await oai.chat.completions.create(
        model=OFFLINE_MODEL, messages=[{"role": "user", "content": "hi"}]
    )
    # The other user's access token works on /v1 too, and their calls are theirs.
    other = sdk(f"{gateway_live.url}/v1", other_user.access_token)
    try:
        await other.chat.completions.create(
            model=OFFLINE_MODEL, messages=[{"role": "user", "content": "hello"}]
        )
    finally:
        await other.close()
    mine = await usage_records(client, user, expected=1)
    theirs = await usage_records(client, other_user, expected=1)
    assert len(mine) == 1
    assert len(theirs) == 1
    assert mine[0]["id"] != theirs[0]["id"]
    assert theirs[0]["api_key_id"] is None  # an access token, not a key
