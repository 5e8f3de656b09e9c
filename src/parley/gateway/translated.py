"""Running a translated call: the offline model, Anthropic and Gemini answer through Pydantic AI's
direct model requests, and their answers become OpenAI completions or `chat.completion.chunk`
events.

A stream runs in a task of its own that feeds a small buffer: the first chunk (or the failure) is
awaited before the HTTP response starts, so an error before the first token is an ordinary error
status; later failures end the stream with an error event. The task is cancelled when the client
goes away, which closes the provider's request; the call is settled in every case.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from pydantic_ai.direct import model_request, model_request_stream
from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models import Model
from pydantic_ai.usage import RequestUsage

from parley.core.errors import (
    ParleyError,
)
from parley.gateway.errors import openai_error_event
from parley.gateway.metering import CallStatus, MeteredCall
from parley.gateway.schemas import ChatCompletion
from parley.gateway.translation import (
    ModelCall,
    finish_reason,
    new_completion_id,
    now_seconds,
    to_completion,
)
from parley.llm.failures import provider_failure
from parley.usage.pricing import estimate_tokens

logger = logging.getLogger(__name__)
BUFFERED_CHUNKS = 64
DONE = b"data: [DONE]\n\n"


async def complete(model: Model, call: ModelCall, metered: MeteredCall, model_id: str) -> bytes:
    """A non-streamed completion.

    Raises:
        ParleyError: the model failed or cannot answer the request.
    """
    try:
        response = await model_request(
            model,
            call.messages,
            model_settings=call.settings,
            model_request_parameters=call.parameters,
            instrument=False,
        )
    except Exception as exc:
        await metered.settle("error", input_tokens=None, output_tokens=0)
        raise provider_failure(exc) from None
    except BaseException:
        await metered.settle("cancelled", input_tokens=None, output_tokens=0)
        raise
    await metered.settle(
        "complete",
        input_tokens=response.usage.input_tokens,
        output_tokens=response.usage.output_tokens,
    )
    completion: ChatCompletion = to_completion(response, model_id=model_id)
    return completion.model_dump_json(exclude_none=False).encode()


def _event(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


@dataclass
class ChunkWriter:
    """Turns the growing model response into `chat.completion.chunk` events: new text as
    `content` deltas, each tool call as its id and name, then its arguments as they arrive."""

    model_id: str
    include_usage: bool
    completion_id: str = field(default_factory=new_completion_id)
    created: int = field(default_factory=now_seconds)
    _text_sent: dict[int, int] = field(default_factory=dict)
    _tool_index: dict[int, int] = field(default_factory=dict)
    _args_sent: dict[int, int] = field(default_factory=dict)

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        """One chunk with one choice."""
        payload: dict[str, Any] = {
            "id": self.completion_id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model_id,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self.include_usage:
            payload["usage"] = None
        return _event(payload)

    def opening(self) -> bytes:
        """The first chunk: the assistant's role."""
        return self.chunk({"role": "assistant", "content": "", "refusal": None})

    def changes(self, response: ModelResponse, *, final: bool = False) -> list[bytes]:
        """Chunks for what the response gained since the last call."""
        chunks: list[bytes] = []
        for index, part in enumerate(response.parts):
            if isinstance(part, TextPart):
                sent = self._text_sent.get(index, 0)
                if len(part.content) > sent:
                    chunks.append(self.chunk({"content": part.content[sent:]}))
                    self._text_sent[index] = len(part.content)
            elif isinstance(part, ToolCallPart):
                chunks.extend(self._tool_call_changes(index, part, final=final))
        return chunks

    def _tool_call_changes(self, index: int, part: ToolCallPart, *, final: bool) -> list[bytes]:
        chunks: list[bytes] = []
        if index not in self._tool_index:
            if not part.tool_name:
                return chunks
            position = len(self._tool_index)
            self._tool_index[index] = position
            opening = {
                "index": position,
                "id": part.tool_call_id,
                "type": "function",
                "function": {"name": part.tool_name, "arguments": ""},
            }
            chunks.append(self.chunk({"tool_calls": [opening]}))
        position = self._tool_index[index]
        # String arguments stream as they grow; an object (Gemini) is sent whole at the end.
        if isinstance(part.args, str):
            arguments = part.args
        elif final:
            arguments = part.args_as_json_str()
        else:
            return chunks
        sent = self._args_sent.get(index, 0)
        if len(arguments) > sent:
            delta = {"index": position, "function": {"arguments": arguments[sent:]}}
            chunks.append(self.chunk({"tool_calls": [delta]}))
            self._args_sent[index] = len(arguments)
        return chunks

    def closing(self, response: ModelResponse) -> list[bytes]:
        """The last chunks: the finish reason, and the usage when asked for."""
        chunks = [self.chunk({}, finish_reason(response))]
        if self.include_usage:
            usage = response.usage
            payload = {
                "id": self.completion_id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model_id,
                "system_fingerprint": None,
                "choices": [],
                "usage": {
                    "prompt_tokens": usage.input_tokens,
                    "completion_tokens": usage.output_tokens,
                    "total_tokens": usage.input_tokens + usage.output_tokens,
                },
            }
            chunks.append(_event(payload))
        return chunks


Item = bytes | ParleyError


@dataclass
class TranslatedStream:
    """One streamed translated call, from opening the model's stream to settling it."""

    model: Model
    call: ModelCall
    metered: MeteredCall
    writer: ChunkWriter
    output_tokens: int = 0
    input_tokens: int | None = None
    status: CallStatus = "cancelled"

    def _count(self, usage: RequestUsage, response: ModelResponse) -> None:
        """The tokens so far; a stream cut before the provider's count gets an estimate from
        what it streamed (about four characters a token)."""
        self.input_tokens = usage.input_tokens or None
        streamed = "".join(
            part.content if isinstance(part, TextPart) else part.args_as_json_str()
            for part in response.parts
            if isinstance(part, TextPart | ToolCallPart)
        )
        self.output_tokens = usage.output_tokens or estimate_tokens(streamed)

    async def _produce(self, send: MemoryObjectSendStream[Item]) -> None:
        async with send:
            try:
                async with model_request_stream(
                    self.model,
                    self.call.messages,
                    model_settings=self.call.settings,
                    model_request_parameters=self.call.parameters,
                    instrument=False,
                ) as stream:
                    await send.send(self.writer.opening())
                    try:
                        async for _event in stream:
                            for chunk in self.writer.changes(stream.get()):
                                await send.send(chunk)
                    finally:
                        self._count(stream.usage, stream.get())
                    response = stream.get()
                    for chunk in self.writer.changes(response, final=True):
                        await send.send(chunk)
                    for chunk in self.writer.closing(response):
                        await send.send(chunk)
                    await send.send(DONE)
                    self.status = "complete"
            except Exception as exc:
                self.status = "error"
                await send.send(provider_failure(exc))

    async def start(self) -> AsyncIterator[bytes]:
        """Open the stream and wait for its first chunk.

        Returns:
            The events, to be streamed to the client.

        Raises:
            ParleyError: the model failed before its first chunk (the call is settled).
        """
        send, receive = anyio.create_memory_object_stream[Item](BUFFERED_CHUNKS)
        task = asyncio.create_task(self._produce(send))
        try:
            first = await receive.receive()
        except BaseException:
            task.cancel()
            await self._finish(task, receive)
            raise
        if isinstance(first, ParleyError):
            await self._finish(task, receive)
            raise first
        return self._events(first, receive, task)

    async def _events(
        self, first: bytes, receive: MemoryObjectReceiveStream[Item], task: asyncio.Task[None]
    ) -> AsyncIterator[bytes]:
        try:
            yield first
            async for item in receive:
                yield item if isinstance(item, bytes) else openai_error_event(item)
        finally:
            task.cancel()
            await self._finish(task, receive)

    async def _finish(
        self, task: asyncio.Task[None], receive: MemoryObjectReceiveStream[Item]
    ) -> None:
        """Wait for the producer to stop and settle the call (shielded: the client may be gone)."""
        with anyio.CancelScope(shield=True):
            receive.close()
            with contextlib.suppress(
                asyncio.CancelledError, anyio.BrokenResourceError, anyio.ClosedResourceError
            ):
                await task
            status = self.status
            await self.metered.settle(
                status, input_tokens=self.input_tokens, output_tokens=self.output_tokens
            )
