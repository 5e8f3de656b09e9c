"""A fake OpenAI-compatible upstream for the benchmarks: `/v1/models` and `/v1/chat/completions`,
streaming (one chunk per token, then the usage chunk when asked) or not, and a tool call when the
request offers tools and its last message says `[call a tool]`.

Its replies are built once per shape and cached, so that it spends as little CPU as it can: the
figures that matter are the relay's and Parley's, and it shares their machine. Configurable by
command-line flags: tokens per reply, time to first token, delay between tokens.

    uv run python -m bench.upstream --port 9100 --tokens 64 --ttft-ms 0 --token-delay-ms 0
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import lru_cache

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

CREATED = int(time.time())
TOOL_TRIGGER = "[call a tool]"


@dataclass(frozen=True)
class Shape:
    """What every reply looks like."""

    tokens: int = 64
    ttft_ms: float = 0.0
    token_delay_ms: float = 0.0


def _chunk(model: str, delta: dict[str, object], finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"


@lru_cache(maxsize=64)
def _stream_events(model: str, tokens: int, usage: bool, tool: bool) -> tuple[bytes, ...]:
    events = [_chunk(model, {"role": "assistant", "content": ""})]
    if tool:
        events.append(
            _chunk(
                model,
                {
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_bench",
                            "type": "function",
                            "function": {"name": "add_task", "arguments": '{"title":"bench"}'},
                        }
                    ]
                },
            )
        )
        events.append(_chunk(model, {}, "tool_calls"))
    else:
        events.extend(_chunk(model, {"content": f" tok{index}"}) for index in range(tokens))
        events.append(_chunk(model, {}, "stop"))
    if usage:
        body = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "choices": [],
            "usage": {
                "prompt_tokens": 12,
                "completion_tokens": tokens,
                "total_tokens": 12 + tokens,
            },
        }
        events.append(b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return tuple(events)


def _completion(model: str, tokens: int) -> dict[str, object]:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "".join(f" tok{index}" for index in range(tokens)),
                },
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": tokens, "total_tokens": 12 + tokens},
    }


def create_app(shape: Shape) -> Starlette:
    """The fake upstream's ASGI app."""

    async def models(_request: Request) -> Response:
        return JSONResponse(
            {
                "object": "list",
                "data": [
                    {"id": "bench-64", "object": "model", "created": CREATED, "owned_by": "bench"}
                ],
            }
        )

    async def completions(request: Request) -> Response:
        body = json.loads(await request.body())
        model = str(body.get("model", "bench-64"))
        messages = body.get("messages") or [{}]
        # A tool call only when the request offers tools and its last message asks for one.
        tool = bool(body.get("tools")) and TOOL_TRIGGER in str(messages[-1].get("content"))
        if not body.get("stream"):
            if shape.ttft_ms:
                await asyncio.sleep(shape.ttft_ms / 1000)
            return JSONResponse(_completion(model, shape.tokens))
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        events = _stream_events(model, shape.tokens, usage, tool)

        async def stream() -> AsyncIterator[bytes]:
            if shape.ttft_ms:
                await asyncio.sleep(shape.ttft_ms / 1000)
            delay = shape.token_delay_ms / 1000
            for event in events:
                yield event
                if delay:
                    await asyncio.sleep(delay)

        return StreamingResponse(stream(), media_type="text/event-stream")

    return Starlette(
        routes=[
            Route("/v1/models", models),
            Route("/v1/chat/completions", completions, methods=["POST"]),
        ]
    )


def main() -> None:
    """Serve the fake upstream on loopback."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--token-delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    shape = Shape(tokens=args.tokens, ttft_ms=args.ttft_ms, token_delay_ms=args.token_delay_ms)
    uvicorn.run(
        create_app(shape),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
