"""Running a /v1 call through a Pydantic AI model (the offline model, Anthropic and Gemini) with
its direct model requests: `to_model_call` builds the request (`parley.gateway.model_requests`),
`complete` answers it whole and `start_stream` as `chat.completion.chunk` events (built by
`parley.gateway.model_responses`). This is the one module the gateway imports the model library
through, deferred until the first such call (see `parley.gateway.service`).

A stream runs in a task of its own that feeds a small buffer: the first chunk (or the failure) is
awaited before the HTTP response starts, so an error before the first token is an ordinary error
status; later failures end the stream with an error event. The task is cancelled when the client
goes away, which closes the provider's request; the call is settled in every case.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from pydantic_ai.direct import model_request, model_request_stream
from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart
from pydantic_ai.models import Model
from pydantic_ai.usage import RequestUsage

from parley.core.errors import ParleyError
from parley.gateway.errors import openai_error_event
from parley.gateway.metering import CallStatus, MeteredCall
from parley.gateway.model_requests import ModelCall, to_model_call
from parley.gateway.model_responses import ChunkWriter, to_completion
from parley.gateway.schemas import ChatCompletion
from parley.llm.failures import provider_failure
from parley.usage.pricing import estimate_tokens

__all__ = ["ModelCall", "TranslatedStream", "complete", "start_stream", "to_model_call"]

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


async def start_stream(
    model: Model, call: ModelCall, metered: MeteredCall, *, model_id: str, include_usage: bool
) -> AsyncIterator[bytes]:
    """A streamed completion, started (see `TranslatedStream.start`).

    Raises:
        ParleyError: the model failed before its first chunk (the call is settled).
    """
    writer = ChunkWriter(model_id=model_id, include_usage=include_usage)
    return await TranslatedStream(model, call, metered, writer).start()
