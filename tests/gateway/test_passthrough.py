"""`/v1/chat/completions` passed through to an OpenAI-compatible provider (the fake OpenAI
server): what reaches the provider, what comes back, tool calls, usage, and the provider's
failures as 400/502/503/504."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from tests.fakes import Reply, ToolCall
from tests.fakes.openai_upstream import FaultyOpenAI
from tests.fixtures.accounts import TestUser, create_api_key
from tests.fixtures.apps import running_app
from tests.fixtures.catalogs import GATEWAY_READ_TIMEOUT_SECONDS, OPENAI_MODEL
from tests.fixtures.gateway import usage_records
from tests.fixtures.servers import free_port
from tests.fixtures.settings import make_settings

UPSTREAM_NAME = OPENAI_MODEL.partition(":")[2]


def completions(fake: FaultyOpenAI) -> list[dict[str, Any]]:
    return [request.body or {} for request in fake.script.completions("/chat/completions")]


async def test_plain_completion_reaches_the_provider_with_its_model_name(
    oai: openai.AsyncOpenAI, openai_fake: FaultyOpenAI, client: httpx.AsyncClient, user: TestUser
) -> None:
    openai_fake.script.push(Reply(text="Paris.", input_tokens=21, output_tokens=3))
    completion = await oai.chat.completions.create(
        model=OPENAI_MODEL,
        messages=[{"role": "user", "content": "Capital of France?"}],
        temperature=0.2,
        top_p=0.9,
        max_tokens=50,
        seed=7,
        stop=["\n\n"],
        user="end-user-1",
        metadata={"purpose": "test"},
        frequency_penalty=0.1,
        presence_penalty=0.2,
        logit_bias={"50256": -100},
        response_format={"type": "text"},
    )
    assert completion.choices[0].message.content == "Paris."
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 21
    [sent] = completions(openai_fake)
    assert sent["model"] == UPSTREAM_NAME
    assert sent["messages"] == [{"role": "user", "content": "Capital of France?"}]
    for name, value in {
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 50,
        "seed": 7,
        "stop": ["\n\n"],
        "user": "end-user-1",
        "metadata": {"purpose": "test"},
        "logit_bias": {"50256": -100},
        "response_format": {"type": "text"},
    }.items():
        assert sent[name] == value, name
    assert "stream_options" not in sent
    # The operator's key is what reaches the provider, never the caller's.
    [request] = openai_fake.script.completions("/chat/completions")
    assert request.headers["authorization"] == "Bearer sk-test"
    [record] = await usage_records(client, user, expected=1)
    assert (record["input_tokens"], record["output_tokens"]) == (21, 3)
    # 21 tokens in at $2/M and 3 out at $8/M.
    assert record["cost_usd"] == pytest.approx((21 * 2 + 3 * 8) / 1_000_000)


async def test_stream_forces_usage_upstream_and_drops_it_when_not_asked(
    oai: openai.AsyncOpenAI, openai_fake: FaultyOpenAI, client: httpx.AsyncClient, user: TestUser
) -> None:
    openai_fake.script.push(Reply(text="one two three four", input_tokens=9, output_tokens=4))
    stream = await oai.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "count"}], stream=True
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert text == "one two three four"
    assert all(chunk.choices for chunk in chunks)  # no usage chunk
    [sent] = completions(openai_fake)
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}
    [record] = await usage_records(client, user, expected=1)
    assert (record["input_tokens"], record["output_tokens"]) == (9, 4)
    assert record["status"] == "complete"


async def test_stream_keeps_the_usage_chunk_when_asked(
    oai: openai.AsyncOpenAI, openai_fake: FaultyOpenAI
) -> None:
    openai_fake.script.push(Reply(text="hi", input_tokens=5, output_tokens=1))
    stream = await oai.chat.completions.create(
        model=OPENAI_MODEL,
        messages=[{"role": "user", "content": "hello"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (5, 1)


async def test_stream_bytes_are_relayed_unrebuilt(
    raw: httpx.AsyncClient, api_key: str, openai_fake: FaultyOpenAI
) -> None:
    openai_fake.script.push(Reply(text="a b"))
    async with raw.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": OPENAI_MODEL,
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
        },
        headers={"Authorization": f"Bearer {api_key}"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-trace-id"]
        body = (await response.aread()).decode()
    events = [block for block in body.split("\n\n") if block]
    assert events[-1] == "data: [DONE]"
    # The provider's own chunk ids and model name come through untouched.
    first = json.loads(events[0].removeprefix("data: "))
    assert first["id"] == "chatcmpl-fake"
    assert first["model"] == UPSTREAM_NAME


async def test_scripted_tool_call_round_trip(
    oai: openai.AsyncOpenAI, openai_fake: FaultyOpenAI
) -> None:
    openai_fake.script.push(
        Reply(tool_calls=(ToolCall("get_weather", {"city": "Paris"}, id="call_w1"),)),
        Reply(text="It is sunny in Paris."),
    )
    tools: list[Any] = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = await oai.chat.completions.create(
        model=OPENAI_MODEL, messages=messages, tools=tools, tool_choice="auto"
    )
    [call] = first.choices[0].message.tool_calls or []
    assert call.id == "call_w1"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages += [
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": "call_w1", "content": '{"sky": "sunny"}'},
    ]
    second = await oai.chat.completions.create(model=OPENAI_MODEL, messages=messages, tools=tools)
    assert second.choices[0].message.content == "It is sunny in Paris."
    sent = completions(openai_fake)
    assert sent[0]["tools"] == tools
    assert sent[0]["tool_choice"] == "auto"
    assert sent[1]["messages"][-1] == {
        "role": "tool",
        "tool_call_id": "call_w1",
        "content": '{"sky": "sunny"}',
    }


async def test_streamed_tool_call(oai: openai.AsyncOpenAI, openai_fake: FaultyOpenAI) -> None:
    openai_fake.script.push(Reply(tool_calls=(ToolCall("lookup", {"q": "milk"}, id="call_1"),)))
    stream = await oai.chat.completions.create(
        model=OPENAI_MODEL,
        messages=[{"role": "user", "content": "find milk"}],
        tools=[{"type": "function", "function": {"name": "lookup"}}],
        stream=True,
    )
    arguments = ""
    names = []
    async for chunk in stream:
        for delta in chunk.choices[0].delta.tool_calls or ():
            if delta.function and delta.function.name:
                names.append(delta.function.name)
            arguments += (delta.function.arguments or "") if delta.function else ""
    assert names == ["lookup"]
    assert json.loads(arguments) == {"q": "milk"}


async def test_unknown_arguments_never_reach_the_provider(
    oai: openai.AsyncOpenAI, openai_fake: FaultyOpenAI
) -> None:
    for name, value in (("api_base", "http://evil.example"), ("base_url", "http://evil.example")):
        with pytest.raises(openai.BadRequestError) as caught:
            await oai.chat.completions.create(
                model=OPENAI_MODEL,
                messages=[{"role": "user", "content": "hi"}],
                extra_body={name: value},
            )
        assert caught.value.body == {
            "message": f"Unrecognized request argument supplied: {name}",
            "type": "invalid_request_error",
            "param": None,
            "code": None,
        }
    assert completions(openai_fake) == []


async def test_n_above_one_is_refused(oai: openai.AsyncOpenAI, openai_fake: FaultyOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.chat.completions.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": "hi"}], n=2
        )
    assert caught.value.param == "n"
    assert completions(openai_fake) == []


async def test_provider_400_passes_through_as_the_callers_error(
    oai: openai.AsyncOpenAI, openai_fake: FaultyOpenAI, client: httpx.AsyncClient, user: TestUser
) -> None:
    openai_fake.script.push(
        Reply(status=400, error_message="This model's maximum context length is 8000 tokens.")
    )
    with pytest.raises(openai.BadRequestError) as caught:
        await oai.chat.completions.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": "long"}]
        )
    assert "maximum context length" in caught.value.message
    assert caught.value.type == "invalid_request_error"
    [record] = await usage_records(client, user, expected=1)
    assert record["status"] == "error"


@pytest.mark.parametrize("status", [401, 403])
async def test_provider_refusing_the_operators_key_is_a_502(
    oai: openai.AsyncOpenAI, openai_fake: FaultyOpenAI, status: int
) -> None:
    openai_fake.script.push(Reply(status=status, error_message="Incorrect API key: sk-test"))
    with pytest.raises(openai.InternalServerError) as caught:
        await oai.chat.completions.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 502
    assert caught.value.code == "provider_error"
    assert "sk-test" not in caught.value.response.text
    assert "127.0.0.1" not in caught.value.response.text


async def test_provider_500_is_retried_then_a_502(
    oai: openai.AsyncOpenAI, openai_fake: FaultyOpenAI, client: httpx.AsyncClient, user: TestUser
) -> None:
    openai_fake.script.push(Reply(status=500), Reply(status=500))
    with pytest.raises(openai.InternalServerError) as caught:
        await oai.chat.completions.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": "hi"}], stream=True
        )
    assert caught.value.status_code == 502
    assert caught.value.body == {
        "message": "The model provider returned an error.",
        "type": "server_error",
        "param": None,
        "code": "provider_error",
    }
    assert len(completions(openai_fake)) == 2  # PROVIDER_MAX_RETRIES=1
    [record] = await usage_records(client, user, expected=1)
    assert record["status"] == "error"


async def test_provider_500_then_success_is_retried(
    oai: openai.AsyncOpenAI, openai_fake: FaultyOpenAI
) -> None:
    openai_fake.script.push(Reply(status=500), Reply(text="recovered"))
    completion = await oai.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == "recovered"


async def test_provider_that_hangs_is_a_504(
    oai: openai.AsyncOpenAI, openai_fake: FaultyOpenAI
) -> None:
    openai_fake.script.push(Reply(text="late", delay=5), Reply(text="late", delay=5))
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        await oai.chat.completions.create(
            model=OPENAI_MODEL, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 504
    assert caught.value.code == "provider_timeout"
    assert time.monotonic() - started < 2 * GATEWAY_READ_TIMEOUT_SECONDS + 2


async def test_stream_cut_midway_ends_with_an_error_event(
    oai: openai.AsyncOpenAI, openai_fake: FaultyOpenAI, client: httpx.AsyncClient, user: TestUser
) -> None:
    openai_fake.cut_after_chunks = 3
    openai_fake.script.push(Reply(text="one two three four five six"))
    stream = await oai.chat.completions.create(
        model=OPENAI_MODEL, messages=[{"role": "user", "content": "count"}], stream=True
    )
    received: list[Any] = []

    async def read_all() -> None:
        async for chunk in stream:
            received.append(chunk)

    with pytest.raises(openai.APIError) as caught:
        await read_all()
    assert received  # some text came before the cut
    assert "provider" in caught.value.message
    [record] = await usage_records(client, user, expected=1)
    assert record["status"] == "error"
    # No usage came: what was streamed is counted (about a token per chunk), and billed (only a
    # call that produced nothing is free).
    assert record["output_tokens"] == 3
    assert record["input_tokens"] > 0
    assert record["cost_usd"] > 0


async def test_provider_that_refuses_connections_is_a_503(
    database_url: str, tmp_path: Path, client: httpx.AsyncClient, user: TestUser
) -> None:
    settings = make_settings(
        database_url,
        tmp_path,
        openai_base_url=f"http://127.0.0.1:{free_port()}/v1",
        openai_models=["gpt-nowhere"],
        provider_max_retries=0,
    )
    key = await create_api_key(client, user)
    async with running_app(settings) as (_, http):
        response = await http.post(
            "/v1/chat/completions",
            json={"model": "openai:gpt-nowhere", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": f"Bearer {key}"},
        )
    assert response.status_code == 503
    assert response.json() == {
        "error": {
            "message": "The model provider is unavailable; try again shortly.",
            "type": "server_error",
            "param": None,
            "code": "provider_unavailable",
        }
    }
    assert "127.0.0.1" not in response.text


async def test_client_hanging_up_cancels_the_provider_stream_and_settles(
    raw: httpx.AsyncClient,
    api_key: str,
    openai_fake: FaultyOpenAI,
    client: httpx.AsyncClient,
    user: TestUser,
) -> None:
    openai_fake.script.push(Reply(text=" ".join(["word"] * 40), chunk_delay=0.05))
    async with raw.stream(
        "POST",
        "/v1/chat/completions",
        json={
            "model": OPENAI_MODEL,
            "messages": [{"role": "user", "content": "x"}],
            "stream": True,
        },
        headers={"Authorization": f"Bearer {api_key}"},
    ) as response:
        lines = response.aiter_lines()
        received = [await anext(lines) for _ in range(4)]
    assert received[0].startswith("data: ")
    [record] = await usage_records(client, user, expected=1)
    assert record["status"] == "cancelled"
    assert 1 <= record["output_tokens"] < 40
    # The provider's stream was closed too, not read to its end.
    for _ in range(100):
        if openai_fake.hung_up_at:
            break
        await asyncio.sleep(0.05)
    assert openai_fake.hung_up_at
    assert not openai_fake.finished_at
