"""`/v1/chat/completions` translated to Anthropic's Messages API (the fake Anthropic server)
through Pydantic AI: system prompts, tool definitions and results go over in Anthropic's shape,
and answers come back in OpenAI's."""

from __future__ import annotations

import json
from typing import Any

import httpx
import openai
import pytest
from tests.fakes import Reply, ToolCall
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fixtures.accounts import TestUser
from tests.fixtures.catalogs import ANTHROPIC_MODEL
from tests.fixtures.gateway import usage_records

TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "add_task",
            "description": "Add a task.",
            "parameters": {
                "type": "object",
                "properties": {"title": {"type": "string"}},
                "required": ["title"],
            },
        },
    }
]


def sent(fake: FakeAnthropic) -> list[dict[str, Any]]:
    return [request.body or {} for request in fake.script.completions("/v1/messages")]


async def test_plain_completion(
    oai: openai.AsyncOpenAI,
    anthropic_fake: FakeAnthropic,
    client: httpx.AsyncClient,
    user: TestUser,
) -> None:
    anthropic_fake.script.push(Reply(text="Bonjour.", input_tokens=30, output_tokens=4))
    completion = await oai.chat.completions.create(
        model=ANTHROPIC_MODEL,
        messages=[
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": "Hello"},
        ],
        max_tokens=100,
        temperature=0.5,
    )
    assert completion.model == ANTHROPIC_MODEL
    assert completion.choices[0].message.content == "Bonjour."
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (30, 4)
    [body] = sent(anthropic_fake)
    assert body["model"] == "claude-fake"
    assert body["max_tokens"] == 100
    assert body["temperature"] == 0.5
    assert "Answer in French." in json.dumps(body["system"])
    assert body["messages"][0]["role"] == "user"
    [record] = await usage_records(client, user, expected=1)
    assert record["model_id"] == ANTHROPIC_MODEL
    assert record["cost_usd"] == pytest.approx((30 * 3 + 4 * 15) / 1_000_000)


async def test_streamed_completion(
    oai: openai.AsyncOpenAI,
    anthropic_fake: FakeAnthropic,
    client: httpx.AsyncClient,
    user: TestUser,
) -> None:
    anthropic_fake.script.push(Reply(text="one two three", input_tokens=12, output_tokens=3))
    stream = await oai.chat.completions.create(
        model=ANTHROPIC_MODEL,
        messages=[{"role": "user", "content": "count"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == "one two three"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    [record] = await usage_records(client, user, expected=1)
    assert (record["input_tokens"], record["output_tokens"]) == (12, 3)


async def test_tool_call_round_trip(oai: openai.AsyncOpenAI, anthropic_fake: FakeAnthropic) -> None:
    anthropic_fake.script.push(
        Reply(tool_calls=(ToolCall("add_task", {"title": "Buy milk"}, id="toolu_1"),)),
        Reply(text="Added it."),
    )
    messages: list[Any] = [{"role": "user", "content": "add buy milk"}]
    first = await oai.chat.completions.create(
        model=ANTHROPIC_MODEL, messages=messages, tools=TOOLS, tool_choice="required"
    )
    assert first.choices[0].finish_reason == "tool_calls"
    [call] = first.choices[0].message.tool_calls or []
    assert call.id == "toolu_1"
    assert call.function.name == "add_task"
    assert json.loads(call.function.arguments) == {"title": "Buy milk"}
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": "toolu_1", "content": '{"id": "t1"}'},
    ]
    second = await oai.chat.completions.create(
        model=ANTHROPIC_MODEL, messages=messages, tools=TOOLS
    )
    assert second.choices[0].message.content == "Added it."
    first_body, second_body = sent(anthropic_fake)
    assert first_body["tools"][0]["name"] == "add_task"
    assert first_body["tools"][0]["input_schema"]["required"] == ["title"]
    assert first_body["tool_choice"]["type"] == "any"
    result = second_body["messages"][-1]["content"][0]
    assert result["type"] == "tool_result"
    assert result["tool_use_id"] == "toolu_1"


async def test_streamed_tool_call(oai: openai.AsyncOpenAI, anthropic_fake: FakeAnthropic) -> None:
    anthropic_fake.script.push(
        Reply(text="Adding.", tool_calls=(ToolCall("add_task", {"title": "Eggs"}, id="toolu_9"),))
    )
    stream = await oai.chat.completions.create(
        model=ANTHROPIC_MODEL,
        messages=[{"role": "user", "content": "add eggs"}],
        tools=[*TOOLS, {"type": "function", "function": {"name": "list_tasks"}}],
        tool_choice={"type": "function", "function": {"name": "add_task"}},
        stream=True,
    )
    text, arguments, ids, finish = "", "", [], None
    async for chunk in stream:
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for call in delta.tool_calls or ():
            ids += [call.id] if call.id else []
            arguments += call.function.arguments or "" if call.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert text == "Adding."
    assert ids == ["toolu_9"]
    assert json.loads(arguments) == {"title": "Eggs"}
    assert finish == "tool_calls"
    [body] = sent(anthropic_fake)
    assert body["tool_choice"] == {"type": "tool", "name": "add_task"}


async def test_provider_overloaded_is_a_503(
    oai: openai.AsyncOpenAI, anthropic_fake: FakeAnthropic
) -> None:
    anthropic_fake.script.push(*[Reply(status=529)] * 3)
    with pytest.raises(openai.APIStatusError) as caught:
        await oai.chat.completions.create(
            model=ANTHROPIC_MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 503
    assert caught.value.code == "provider_unavailable"


async def test_provider_server_error_is_a_502(
    oai: openai.AsyncOpenAI,
    anthropic_fake: FakeAnthropic,
    client: httpx.AsyncClient,
    user: TestUser,
) -> None:
    anthropic_fake.script.push(*[Reply(status=500)] * 3)
    with pytest.raises(openai.InternalServerError) as caught:
        await oai.chat.completions.create(
            model=ANTHROPIC_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
        )
    assert caught.value.status_code == 502
    assert caught.value.code == "provider_error"
    [record] = await usage_records(client, user, expected=1)
    assert record["status"] == "error"


async def test_client_hanging_up_mid_stream_settles_as_cancelled(
    raw: httpx.AsyncClient,
    api_key: str,
    anthropic_fake: FakeAnthropic,
    client: httpx.AsyncClient,
    user: TestUser,
) -> None:
    anthropic_fake.script.push(Reply(text=" ".join(["word"] * 40), chunk_delay=0.05))
    async with raw.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": ANTHROPIC_MODEL,
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
        },
        headers={"Authorization": f"Bearer {api_key}"},
    ) as response:
        assert response.status_code == 200
        lines = response.aiter_lines()
        received = [await anext(lines) for _ in range(6)]
    assert any('"content":"word' in line or '"content":" word' in line for line in received)
    [record] = await usage_records(client, user, expected=1)
    assert record["status"] == "cancelled"
    assert record["input_tokens"] > 0
    assert 1 <= record["output_tokens"] < 40
