"""A fake OpenAI-compatible server: `GET /v1/models` and `POST /v1/chat/completions`, streaming
(server-sent `chat.completion.chunk`s, then a usage chunk when `stream_options.include_usage`, then
`[DONE]`) and not, with tool calls and OpenAI-style errors, as scripted by `Reply`s.

    fake = FakeOpenAI.start()
    fake.script.push(Reply(tool_calls=(ToolCall("add_task", {"title": "x"}),)), Reply(text="Done"))
    ... OpenAIProvider(base_url=fake.base_url) ...
    fake.stop()

`FaultyOpenAI` is the same server able to cut or stall a stream midway, recording hang-ups.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.fakes import FakeUpstream, Reply, Script, words

DEFAULT_MODELS = ("gpt-fake-large", "text-embedding-fake", "gpt-fake-small")


def _usage(reply: Reply) -> dict[str, int]:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
    }


def _tool_calls(reply: Reply) -> list[dict[str, Any]]:
    return [
        {
            "id": call.id or f"call_{index + 1}",
            "type": "function",
            "function": {
                "name": call.name,
                "arguments": call.arguments
                if isinstance(call.arguments, str)
                else json.dumps(call.arguments),
            },
        }
        for index, call in enumerate(reply.tool_calls)
    ]


def _finish_reason(reply: Reply) -> str:
    if reply.finish_reason is not None:
        return reply.finish_reason
    return "tool_calls" if reply.tool_calls else "stop"


def _chunk(model: str, delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }


@dataclass
class FakeOpenAI(FakeUpstream):
    """The fake server's state: what it lists, what it will answer, what it saw."""

    models: list[str] = field(default_factory=lambda: list(DEFAULT_MODELS))
    models_status: int = 200

    @property
    def base_url(self) -> str:
        """What `OPENAI_BASE_URL` would be: the origin and `/v1`."""
        return f"{self.origin}/v1"

    async def list_models(self, request: Request) -> Response:
        await self._record(request)
        if self.models_status != 200:
            return self._error(Reply(status=self.models_status, error_message="no models today"))
        data = [
            {"id": name, "object": "model", "created": 0, "owned_by": "fake"}
            for name in self.models
        ]
        return JSONResponse({"object": "list", "data": data})

    def _error(self, reply: Reply) -> Response:
        return JSONResponse(
            {
                "error": {
                    "message": reply.error_message,
                    "type": "server_error" if reply.status >= 500 else "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            },
            status_code=reply.status,
        )

    async def chat_completions(self, request: Request) -> Response:
        body = await self._record(request) or {}
        reply = self.script.next_reply()
        if reply.delay:
            await asyncio.sleep(reply.delay)
        if reply.status != 200:
            return self._error(reply)
        model = str(body.get("model", "gpt-fake"))
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                self._stream(model, reply, include_usage=include_usage),
                media_type="text/event-stream",
            )
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.tool_calls:
            message["tool_calls"] = _tool_calls(reply)
        return JSONResponse(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {"index": 0, "message": message, "finish_reason": _finish_reason(reply)}
                ],
                "usage": _usage(reply),
            }
        )

    async def _stream(self, model: str, reply: Reply, *, include_usage: bool) -> AsyncIterator[str]:
        chunks: list[dict[str, Any]] = [_chunk(model, {"role": "assistant", "content": ""})]
        chunks += [  # as vLLM, DeepSeek and llama.cpp stream a reasoning model's thinking
            _chunk(model, {"reasoning_content": piece})
            for piece in words(reply.reasoning or "")
            if piece
        ]
        chunks += [_chunk(model, {"content": piece}) for piece in words(reply.text or "") if piece]
        for index, call in enumerate(_tool_calls(reply)):
            opening = {"index": index, "id": call["id"], "type": "function"}
            opening["function"] = {"name": call["function"]["name"], "arguments": ""}
            chunks.append(_chunk(model, {"tool_calls": [opening]}))
            arguments = call["function"]["arguments"]
            for half in (arguments[: len(arguments) // 2], arguments[len(arguments) // 2 :]):
                delta = {"index": index, "function": {"arguments": half}}
                chunks.append(_chunk(model, {"tool_calls": [delta]}))
        chunks.append(_chunk(model, {}, _finish_reason(reply)))
        if include_usage:
            # As OpenAI does: `"usage": null` on every chunk, then a last chunk with the usage.
            chunks = [{**chunk, "usage": None} for chunk in chunks]
            chunks.append({**_chunk(model, {}), "choices": [], "usage": _usage(reply)})
        for chunk in chunks:
            if reply.chunk_delay:
                await asyncio.sleep(reply.chunk_delay)
            yield f"data: {json.dumps(chunk)}\n\n"
        yield "data: [DONE]\n\n"

    def app(self) -> Starlette:
        """The ASGI app."""
        return Starlette(
            routes=[
                Route("/v1/models", self.list_models, methods=["GET"]),
                Route("/v1/chat/completions", self.chat_completions, methods=["POST"]),
            ]
        )


@dataclass
class FaultyOpenAI(FakeOpenAI):
    """The fake OpenAI server, able to cut a stream after some chunks (as a crashed upstream
    would) and recording when a client closed a stream before its end."""

    cut_after_chunks: int | None = None
    stall_after_chunks: int | None = None
    hung_up_at: list[float] = field(default_factory=list)
    finished_at: list[float] = field(default_factory=list)

    def reset(self) -> None:
        """A new script, no fault, nothing recorded."""
        self.script = Script()
        self.cut_after_chunks = None
        self.stall_after_chunks = None
        self.hung_up_at.clear()
        self.finished_at.clear()

    async def _stream(self, model: str, reply: Reply, *, include_usage: bool) -> AsyncIterator[str]:
        sent = 0
        completed = False
        try:
            async for line in super()._stream(model, reply, include_usage=include_usage):
                if self.cut_after_chunks is not None and sent >= self.cut_after_chunks:
                    raise RuntimeError("upstream crashed mid-stream")
                if self.stall_after_chunks is not None and sent >= self.stall_after_chunks:
                    await asyncio.sleep(60)  # hangs until the client gives up
                sent += 1
                yield line
            completed = True
        finally:
            if completed:
                self.finished_at.append(time.monotonic())
            elif not (self.cut_after_chunks is not None and sent >= self.cut_after_chunks):
                self.hung_up_at.append(time.monotonic())
