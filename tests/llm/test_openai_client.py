"""`ParleyOpenAI` builds streamed chunks with pydantic-core: the same objects the SDK's lenient
builder makes for chunks on OpenAI's schema, and the SDK's own way for the others. (A whole turn
over it is in tests/turns/test_streaming.py.)"""

from __future__ import annotations

from typing import Any

import httpx2
import openai._base_client
import pytest
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionChunk

from parley.llm.openai_client import ParleyOpenAI

CHUNKS: list[dict[str, Any]] = [
    {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "m",
        "choices": [{"index": 0, "delta": {"content": " word"}, "finish_reason": None}],
        "usage": None,
    },
    {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "add_task", "arguments": '{"ti'},
                        }
                    ]
                },
                "finish_reason": None,
            }
        ],
        "vendor_field": {"kept": True},
    },
    {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "m",
        "choices": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8},
    },
]


@pytest.fixture
async def clients() -> Any:
    async with httpx2.AsyncClient() as http:
        options = {"api_key": "k", "base_url": "http://127.0.0.1:9/v1", "http_client": http}
        yield ParleyOpenAI(**options), AsyncOpenAI(**options)


def _no_lenient_builder(**_: Any) -> Any:
    raise AssertionError("the SDK's lenient builder was used")


@pytest.mark.parametrize("data", CHUNKS)
async def test_chunks_on_the_schema_are_the_sdks_own(
    clients: Any, data: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    ours, sdk = clients
    expected = sdk._process_response_data(data=data, cast_to=ChatCompletionChunk, response=None)
    monkeypatch.setattr(openai._base_client, "construct_type", _no_lenient_builder)
    built = ours._process_response_data(data=data, cast_to=ChatCompletionChunk, response=None)
    assert type(built) is ChatCompletionChunk
    assert built == expected
    assert built.model_dump() == expected.model_dump()


async def test_a_chunk_off_the_schema_is_built_leniently(clients: Any) -> None:
    ours, _ = clients
    data = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "m",  # no `created`
        "choices": [{"index": 0, "delta": {}, "finish_reason": "eos"}],
    }
    built = ours._process_response_data(data=data, cast_to=ChatCompletionChunk, response=None)
    assert built.choices[0].finish_reason == "eos"
    assert built.model == "m"
