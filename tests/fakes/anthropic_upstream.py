"""A fake Anthropic server: `GET /v1/models` and `POST /v1/messages`, streaming (the Messages
events: `message_start`, `content_block_start` / `content_block_delta` / `content_block_stop` for
text and `tool_use` blocks, `message_delta` with the usage, `message_stop`) and not, with
Anthropic-style errors, as scripted by `Reply`s."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes import FakeUpstream, Reply, words

DEFAULT_MODELS = (
    ("claude-fake-opus", "Claude Fake Opus"),
    ("claude-fake-haiku", "Claude Fake Haiku"),
)


def _blocks(reply: Reply) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if reply.text:
        blocks.append({"type": "text", "text": reply.text})
    blocks += [
        {
            "type": "tool_use",
            "id": call.id or f"toolu_{index + 1}",
            "name": call.name,
            "input": call.arguments,
        }
        for index, call in enumerate(reply.tool_calls)
    ]
    return blocks


def _stop_reason(reply: Reply) -> str:
    return "tool_use" if reply.tool_calls else "end_turn"


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


@dataclass
class FakeAnthropic(FakeUpstream):
    """The fake server's state: what it lists, what it will answer, what it saw."""

    models: list[tuple[str, str]] = field(default_factory=lambda: list(DEFAULT_MODELS))

    @property
    def base_url(self) -> str:
        """What `ANTHROPIC_BASE_URL` would be: the origin (the SDK adds `/v1/...`)."""
        return self.origin

    async def list_models(self, request: Request) -> Response:
        await self._record(request)
        data = [
            {
                "type": "model",
                "id": model_id,
                "display_name": name,
                "created_at": "2025-01-01T00:00:00Z",
            }
            for model_id, name in self.models
        ]
        return JSONResponse(
            {
                "data": data,
                "has_more": False,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
            }
        )

    async def messages(self, request: Request) -> Response:
        body = await self._record(request) or {}
        reply = self.script.next_reply()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            kind = "api_error" if reply.status >= 500 else "invalid_request_error"
            return JSONResponse(
                {"type": "error", "error": {"type": kind, "message": reply.error_message}},
                status_code=reply.status,
            )
        model = str(body.get("model", "claude-fake"))
        if body.get("stream"):
            return StreamingResponse(self._stream(model, reply), media_type="text/event-stream")
        return JSONResponse(
            {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": _blocks(reply),
                "stop_reason": _stop_reason(reply),
                "stop_sequence": None,
                "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
            }
        )

    async def _stream(self, model: str, reply: Reply) -> AsyncIterator[str]:
        events = [
            _event(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": "msg_fake",
                        "type": "message",
                        "role": "assistant",
                        "model": model,
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": reply.input_tokens, "output_tokens": 1},
                    },
                },
            )
        ]
        for index, block in enumerate(_blocks(reply)):
            if block["type"] == "text":
                start = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": piece} for piece in words(block["text"])]
            else:
                start = {**block, "input": {}}
                arguments = json.dumps(block["input"])
                halves = (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :])
                deltas = [{"type": "input_json_delta", "partial_json": half} for half in halves]
            events.append(
                _event(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": start},
                )
            )
            events += [
                _event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
                for delta in deltas
            ]
            events.append(
                _event("content_block_stop", {"type": "content_block_stop", "index": index})
            )
        events.append(
            _event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None},
                    "usage": {"output_tokens": reply.output_tokens},
                },
            )
        )
        events.append(_event("message_stop", {"type": "message_stop"}))
        for event in events:
            if reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
            yield event

    def app(self) -> Starlette:
        """The ASGI app."""
        return Starlette(
            routes=[
                Route("/v1/models", self.list_models, methods=["GET"]),
                Route("/v1/messages", self.messages, methods=["POST"]),
            ]
        )
