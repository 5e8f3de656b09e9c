"""The OpenAI-compatible step (`parley.llm.openai_step`) and the reply loop around it,
against streams such servers really send: the fake OpenAI upstream's stream is replaced, for one
test, by raw lines (errors mid-stream, calls without an index or id, a name after the first delta,
`<think>` tags, a stream cut inside a call), through the HTTP API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.fakes import Reply
from tests.fakes.openai_upstream import FaultyOpenAI
from tests.fixtures.accounts import TestUser
from tests.fixtures.chats import new_chat
from tests.fixtures.streams import chunk_types, parse_sse


def _chunk(delta: dict[str, Any], finish_reason: str | None = None, **extra: Any) -> str:
    payload = {
        "id": "chatcmpl-raw",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "gpt-fake-large",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        **extra,
    }
    return f"data: {json.dumps(payload)}\n\n"


USAGE = (
    "data: "
    + json.dumps(
        {
            "id": "chatcmpl-raw",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "gpt-fake-large",
            "choices": [],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        }
    )
    + "\n\n"
)
DONE = "data: [DONE]\n\n"


@pytest.fixture
def raw_streams(upstream: FaultyOpenAI, monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Make the fake's next streamed answers these bodies (each a list of raw lines), in order."""
    bodies: list[list[str]] = []

    async def stream(model: str, reply: Reply, *, include_usage: bool) -> AsyncIterator[str]:
        for line in bodies.pop(0):
            yield line

    monkeypatch.setattr(upstream, "_stream", stream)

    def push(*new: list[str]) -> None:
        bodies.extend(new)

    return push


async def _turn(api: httpx.AsyncClient, user: TestUser, content: str = "Go") -> tuple[str, list]:
    chat_id = await new_chat(api, user)
    response = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": content}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    return chat_id, parse_sse(response.text)


async def _reply(api: httpx.AsyncClient, user: TestUser, chat_id: str) -> dict[str, Any]:
    response = await api.get(f"/api/chats/{chat_id}/messages", headers=user.headers)
    return response.json()["data"]["items"][-1]  # type: ignore[no-any-return]


def _chunks(events: list) -> Iterator[dict[str, Any]]:
    return (event.chunk for event in events if event.data != "[DONE]")


async def test_a_mid_stream_error_that_comes_with_choices_fails_the_reply(
    api: httpx.AsyncClient, user: TestUser, raw_streams: Callable[..., None]
) -> None:
    """OpenRouter reports an error mid-stream as a chunk with both `error` and `choices` (with
    `finish_reason: "error"`); the `openai` SDK raises on any chunk with an `error`. The reply
    must not be saved as complete."""
    raw_streams(
        [
            _chunk({"role": "assistant", "content": "Partial"}),
            _chunk(
                {"content": ""},
                "error",
                error={"code": "server_error", "message": "Provider disconnected unexpectedly"},
            ),
            DONE,
        ]
    )
    chat_id, events = await _turn(api, user)
    assert "error" in chunk_types(events)
    reply = await _reply(api, user, chat_id)
    assert reply["status"] == "error"


async def test_a_200_answer_with_no_stream_events_is_not_a_complete_reply(
    api: httpx.AsyncClient, user: TestUser, raw_streams: Callable[..., None]
) -> None:
    """A server (or proxy) answering 200 with a JSON error instead of an event stream: nothing
    streamed, nothing to save; Pydantic AI raises on a stream without a chunk."""
    raw_streams([json.dumps({"error": {"message": "model is loading"}}) + "\n"])
    chat_id, events = await _turn(api, user)
    reply = await _reply(api, user, chat_id)
    assert reply["status"] == "error", (chunk_types(events), reply["parts"])


async def test_parallel_tool_calls_without_an_index_are_separate_calls(
    api: httpx.AsyncClient, user: TestUser, raw_streams: Callable[..., None]
) -> None:
    """Servers that send each call whole without `index` (Gemini's OpenAI-compatible API does):
    Pydantic AI makes each named call a part of its own."""
    raw_streams(
        [
            _chunk({"role": "assistant", "content": ""}),
            _chunk(
                {
                    "tool_calls": [
                        {
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "add_task", "arguments": '{"title": "A"}'},
                        }
                    ]
                }
            ),
            _chunk(
                {
                    "tool_calls": [
                        {
                            "id": "call_b",
                            "type": "function",
                            "function": {"name": "add_task", "arguments": '{"title": "B"}'},
                        }
                    ]
                }
            ),
            _chunk({}, "tool_calls"),
            USAGE,
            DONE,
        ],
        [_chunk({"role": "assistant", "content": "Added both."}), _chunk({}, "stop"), DONE],
    )
    _, events = await _turn(api, user, "Add A and B")
    available = [c for c in _chunks(events) if c["type"] == "tool-input-available"]
    assert [(c["toolCallId"], c["input"]) for c in available] == [
        ("call_a", {"title": "A"}),
        ("call_b", {"title": "B"}),
    ]


async def test_a_tool_name_sent_after_the_first_delta_is_kept(
    api: httpx.AsyncClient, user: TestUser, raw_streams: Callable[..., None]
) -> None:
    """A call whose first delta has only its id (name and arguments later): Pydantic AI holds it
    until the name comes."""
    raw_streams(
        [
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"tool_calls": [{"index": 0, "id": "call_a", "type": "function"}]}),
            _chunk({"tool_calls": [{"index": 0, "function": {"name": "add_task"}}]}),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"title": "A"}'}}]}),
            _chunk({}, "tool_calls"),
            DONE,
        ],
        [_chunk({"role": "assistant", "content": "Added."}), _chunk({}, "stop"), DONE],
    )
    _, events = await _turn(api, user, "Add A")
    available = [c for c in _chunks(events) if c["type"] == "tool-input-available"]
    assert [c["toolName"] for c in available] == ["add_task"]
    assert not [c for c in _chunks(events) if c["type"] == "tool-output-error"]


async def test_tool_calls_without_ids_get_distinct_ids_within_a_reply(
    api: httpx.AsyncClient, user: TestUser, raw_streams: Callable[..., None]
) -> None:
    """A server that sends no call ids: each call of the reply needs an id of its own (the AI SDK
    client finds a tool part by its id; Pydantic AI generates a unique one)."""

    def step(title: str) -> list[str]:
        arguments = json.dumps({"title": title})
        call = {
            "index": 0,
            "type": "function",
            "function": {"name": "add_task", "arguments": arguments},
        }
        return [
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"tool_calls": [call]}),
            _chunk({}, "tool_calls"),
            DONE,
        ]

    raw_streams(
        step("A"),
        step("B"),
        [_chunk({"role": "assistant", "content": "Done."}), _chunk({}, "stop"), DONE],
    )
    _, events = await _turn(api, user, "Add A then B")
    starts = [c["toolCallId"] for c in _chunks(events) if c["type"] == "tool-input-start"]
    assert len(starts) == 2
    assert len(set(starts)) == 2, starts


async def test_think_tags_in_the_content_are_reasoning(
    api: httpx.AsyncClient, user: TestUser, raw_streams: Callable[..., None]
) -> None:
    """Reasoning models served without a reasoning parser (Ollama's and llama.cpp's older
    versions, vLLM) stream `<think>...</think>` in the content; Pydantic AI's OpenAI model splits
    it into a thinking part."""
    raw_streams(
        [
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"content": "<think>"}),
            _chunk({"content": "Pondering."}),
            _chunk({"content": "</think>"}),
            _chunk({"content": "Answer."}),
            _chunk({}, "stop"),
            DONE,
        ]
    )
    chat_id, _ = await _turn(api, user)
    reply = await _reply(api, user, chat_id)
    assert reply["parts"] == [
        {"type": "reasoning", "text": "Pondering."},
        {"type": "text", "text": "Answer."},
    ]


async def test_reasoning_goes_back_with_the_tool_calls_of_the_turn(
    api: httpx.AsyncClient,
    user: TestUser,
    upstream: FaultyOpenAI,
    raw_streams: Callable[..., None],
) -> None:
    """DeepSeek's thinking mode answers 400 to a tool-calling assistant turn of the current
    question sent without its `reasoning_content`; Pydantic AI's OpenAI model sends it back."""
    call = {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"name": "list_tasks", "arguments": "{}"},
    }
    raw_streams(
        [
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"reasoning_content": "I should look first."}),
            _chunk({"tool_calls": [call]}),
            _chunk({}, "tool_calls"),
            DONE,
        ],
        [_chunk({"role": "assistant", "content": "Nothing yet."}), _chunk({}, "stop"), DONE],
    )
    await _turn(api, user, "What is on my list?")
    second = upstream.script.completions("/chat/completions")[1].body or {}
    assistant = next(m for m in second["messages"] if m["role"] == "assistant")
    assert assistant.get("reasoning_content") == "I should look first.", assistant


async def test_a_tool_call_cut_mid_stream_is_answered_before_the_end(
    api: httpx.AsyncClient, user: TestUser, raw_streams: Callable[..., None]
) -> None:
    """The stream breaks off while a call's arguments stream: its `tool-input-start` must not be
    left open (the loop's `_close` promises that no client shows a call as still running)."""
    raw_streams(
        [
            _chunk({"role": "assistant", "content": ""}),
            _chunk(
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_a",
                            "type": "function",
                            "function": {"name": "add_task", "arguments": '{"tit'},
                        }
                    ]
                }
            ),
            "data: {not json\n\n",
        ]
    )
    _, events = await _turn(api, user)
    chunks = list(_chunks(events))
    started = {c["toolCallId"] for c in chunks if c["type"] == "tool-input-start"}
    ended = {
        c["toolCallId"]
        for c in chunks
        if c["type"] in ("tool-input-available", "tool-input-error", "tool-output-error")
    }
    assert started == {"call_a"}
    assert ended == started, chunk_types(events)


async def test_a_later_step_cut_short_still_counts_what_it_streamed(
    api: httpx.AsyncClient, user: TestUser, raw_streams: Callable[..., None]
) -> None:
    """Step 1 reports its usage (5 in, 3 out); step 2 streams about 250 tokens of text, then
    breaks off before its usage report. The reply is billed for step 2's output too (an estimate,
    as for a reply cut in its first step), not for step 1's 3 tokens only."""
    call = {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"name": "list_tasks", "arguments": "{}"},
    }
    raw_streams(
        [
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"tool_calls": [call]}),
            _chunk({}, "tool_calls"),
            USAGE,
            DONE,
        ],
        [_chunk({"role": "assistant", "content": " ".join(["word"] * 200)}), "data: {oops\n\n"],
    )
    chat_id, _ = await _turn(api, user)
    reply = await _reply(api, user, chat_id)
    assert reply["status"] == "error"
    assert reply["usage"]["output_tokens"] > 100, reply["usage"]


async def test_think_tags_split_across_chunks_and_list_content_are_read(
    api: httpx.AsyncClient, user: TestUser, raw_streams: Callable[..., None]
) -> None:
    """A tag may arrive in pieces; Mistral's API sends content as a list of typed parts."""
    raw_streams(
        [
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"content": "<thi"}),
            _chunk({"content": "nk>Weigh it.</th"}),
            _chunk({"content": "ink>\n\nThe answer"}),
            _chunk({"content": [{"type": "text", "text": " is 4."}, {"type": "image_url"}]}),
            _chunk({"content": " <b>"}),
            _chunk({}, "stop"),
            DONE,
        ]
    )
    chat_id, _ = await _turn(api, user)
    reply = await _reply(api, user, chat_id)
    assert reply["parts"] == [
        {"type": "reasoning", "text": "Weigh it."},
        {"type": "text", "text": "The answer is 4. <b>"},
    ]


async def test_a_server_that_reports_no_usage_is_billed_an_estimate_for_each_step(
    api: httpx.AsyncClient, user: TestUser, raw_streams: Callable[..., None]
) -> None:
    """No usage chunk at all (a server that ignores `stream_options`): each step's output is
    estimated from what it streamed, four characters a token."""
    call = {
        "index": 0,
        "id": "call_a",
        "type": "function",
        "function": {"name": "list_tasks", "arguments": "{}"},
    }
    raw_streams(
        [_chunk({"tool_calls": [call]}), _chunk({}, "tool_calls"), DONE],
        [_chunk({"content": "x" * 400}), _chunk({}, "stop"), DONE],
    )
    chat_id, _ = await _turn(api, user)
    reply = await _reply(api, user, chat_id)
    assert reply["status"] == "complete"
    # 2 characters of arguments (1 token), then 400 of text (100 tokens).
    assert reply["usage"]["output_tokens"] == 101
    assert reply["usage"]["input_tokens"] > 0
