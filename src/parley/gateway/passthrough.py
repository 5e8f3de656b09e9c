"""Pass-through to an OpenAI-compatible provider: the caller's request goes to the provider's
`/chat/completions` almost as sent, and its answer comes back unrebuilt.

Only `model` changes (the catalog id becomes the provider's model name) and, when streaming,
`stream_options.include_usage` is forced on so that Parley learns the tokens used. The provider's
URL and key come from the configuration, never from the request. The answer is relayed as the
provider's bytes: a stream line is parsed only when it carries a usage object, and that usage
chunk is dropped when the caller did not ask for it. Each streamed chunk counts as about one token,
so a stream cut before its usage still settles an estimate.

The request goes out through `parley.llm.openai_relay.OpenAIRelay`, which retries failures
before the first byte and maps the provider's refusals (a 400 with the provider's message, param
and code for the caller's faults; 502, 503 or 504 for the provider's). No message ever names the
provider's URL or key.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from parley.core.errors import ParleyError, ProviderError
from parley.gateway.errors import openai_error_event
from parley.gateway.metering import CallStatus, MeteredCall
from parley.llm.openai_relay import OpenAIRelay, RelayResponse

logger = logging.getLogger(__name__)
_USAGE_KEY = b'"usage"'
_JSON_SEPARATORS = frozenset(b" :")
_OPEN_BRACE = ord("{")


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens a provider reported."""

    input_tokens: int
    output_tokens: int


def usage_of(payload: Mapping[str, Any]) -> TokenUsage | None:
    """The usage in an OpenAI completion or chunk, if it carries one."""
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return None
    return TokenUsage(
        input_tokens=int(usage.get("prompt_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
    )


def _usage_at(data: bytes, start: int = 0) -> int:
    """Where the next `"usage": {` in `data` is (OpenAI sends `"usage": null` on every other
    chunk of a stream with usage), from `start`, without copying it; -1 if none."""
    end = len(data)
    found = data.find(_USAGE_KEY, start)
    while found != -1:
        index = found + len(_USAGE_KEY)
        while index < end and data[index] in _JSON_SEPARATORS:
            index += 1
        if index < end and data[index] == _OPEN_BRACE:
            return found
        found = data.find(_USAGE_KEY, index)
    return -1


def _carries_usage(data: bytes) -> bool:
    """Whether `data` holds `"usage": {`."""
    return _usage_at(data) != -1


async def complete(relay: OpenAIRelay, body: Mapping[str, Any], call: MeteredCall) -> bytes:
    """A non-streamed completion: the provider's JSON, as it sent it.

    Raises:
        ParleyError: the provider failed.
    """
    response = await relay.open(body, stream=False)
    try:
        content = await response.read()
    finally:
        response.close()
    try:
        usage = usage_of(json.loads(content))
    except (ValueError, AttributeError):
        raise ProviderError("The model provider answered something that is not JSON.") from None
    await call.settle(
        "complete",
        input_tokens=usage.input_tokens if usage else None,
        output_tokens=usage.output_tokens if usage else 0,
    )
    return content


@dataclass
class StreamRelay:
    """Relays one open provider stream to the caller and settles the call at its end.

    Attributes:
        chunks: `data:` lines relayed so far (about one token each).
        usage: what the provider's usage chunk said, once it came.
    """

    response: RelayResponse
    call: MeteredCall
    include_usage: bool
    chunks: int = 0
    usage: TokenUsage | None = None
    _drop_blank: bool = False

    def _read_usage(self, block: bytes, at: int) -> None:
        """Read the usage of the `data:` lines of `block` carrying one (the first at `at`),
        parsing only those lines: the block is relayed as it is."""
        while at != -1:
            start = block.rfind(b"\n", 0, at) + 1
            end = block.find(b"\n", at)
            end = len(block) if end == -1 else end
            line = block[start:end]
            if line.startswith(b"data:"):
                with contextlib.suppress(ValueError, AttributeError):  # not JSON: relayed anyway
                    self.usage = usage_of(json.loads(line[5:])) or self.usage
            at = _usage_at(block, end)

    def _take_usage(self, block: bytes) -> bytes:
        """Read the usage out of the lines carrying it; drop them (with the blank line that ends
        their event) unless the caller asked."""
        kept: list[bytes] = []
        for line in block.splitlines(keepends=True):
            if self._drop_blank and line in (b"\n", b"\r\n"):
                self._drop_blank = False
                continue
            if not (line.startswith(b"data:") and _carries_usage(line)):
                kept.append(line)
                continue
            try:
                payload = json.loads(line[5:])
            except ValueError:
                kept.append(line)
                continue
            self.usage = usage_of(payload) or self.usage
            if self.include_usage:
                kept.append(line)
                continue
            if payload.get("choices"):
                # A provider that puts usage on its last content chunk: keep the content.
                payload["usage"] = None
                kept.append(b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n")
            else:
                self._drop_blank = True
        return b"".join(kept)

    async def start(self) -> AsyncIterator[bytes]:
        """The events to stream, already started: however the response ends (even if it never
        starts sending), the generator's cleanup closes the provider's stream and settles."""
        events = self._events()
        await anext(events)  # the empty primer
        return events

    async def _events(self) -> AsyncIterator[bytes]:
        """The provider's stream, line-aligned; an error event if it breaks off."""
        status: CallStatus = "cancelled"
        pending = b""
        try:
            yield b""
            try:
                async for raw in self.response.chunks():
                    cut = raw.rfind(b"\n")
                    if cut == -1:
                        pending += raw
                        continue
                    block = pending + raw[: cut + 1] if pending else raw[: cut + 1]
                    pending = raw[cut + 1 :]
                    self.chunks += block.count(b"data:")
                    if self._drop_blank:
                        block = self._take_usage(block)
                    elif (at := _usage_at(block)) != -1:
                        if self.include_usage:  # relayed as sent: only the usage is read
                            self._read_usage(block, at)
                        else:
                            block = self._take_usage(block)
                    if block:
                        yield block
                if pending:
                    yield pending
                status = "complete"
            except ParleyError as failure:  # the connection broke off or went quiet
                status = "error"
                yield openai_error_event(failure)
        finally:
            self.response.close()
            usage = self.usage
            await self.call.settle(
                status,
                input_tokens=usage.input_tokens if usage else None,
                output_tokens=usage.output_tokens if usage else self.chunks,
            )
