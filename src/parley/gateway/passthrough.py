"""Pass-through to an OpenAI-compatible provider: the caller's request goes to the provider's
`/chat/completions` almost as sent, and its answer comes back unrebuilt.

Only `model` changes (the catalog id becomes the provider's model name) and, when streaming,
`stream_options.include_usage` is forced on so that Parley learns the tokens used. The provider's
URL and key come from the configuration, never from the request. The answer is relayed as the
provider's bytes: a stream line is parsed only when it carries a usage object, and that usage
chunk is dropped when the caller did not ask for it. Each streamed chunk counts as about one token,
so a stream cut before its usage still settles an estimate.

Failures before the first byte are retried like the provider SDKs do (connection errors, 408, 429,
5xx; `PROVIDER_MAX_RETRIES`), then become 502 `provider_error`, 503 `provider_unavailable` or 504
`provider_timeout`; a provider's 400, 413 or 422 is the caller's fault and is answered as a 400
with the provider's message, param and code. A provider's 401 or 403 means the operator's key is
wrong: a 502. No message ever names the provider's URL or key.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import httpx2

from parley.core.errors import ParleyError, ProviderError, ProviderTimeout, ProviderUnavailable
from parley.gateway.errors import InvalidRequest, openai_error_event
from parley.gateway.metering import CallStatus, MeteredCall
from parley.llm.catalog_config import ProviderConfig

logger = logging.getLogger(__name__)
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
CALLER_FAULT_STATUSES = frozenset({400, 413, 422})
BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 8.0
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


def _carries_usage(data: bytes) -> bool:
    """Whether `data` holds `"usage": {` (OpenAI sends `"usage": null` on every other chunk of a
    stream with usage), without copying it."""
    end = len(data)
    start = data.find(_USAGE_KEY)
    while start != -1:
        index = start + len(_USAGE_KEY)
        while index < end and data[index] in _JSON_SEPARATORS:
            index += 1
        if index < end and data[index] == _OPEN_BRACE:
            return True
        start = data.find(_USAGE_KEY, index)
    return False


def _redact(text: str, config: ProviderConfig) -> str:
    for secret in (config.api_key, config.base_url):
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def _rejection(status: int, content: bytes, config: ProviderConfig) -> ParleyError:
    """The error for a provider's answer that is not a 200."""
    if status in CALLER_FAULT_STATUSES:
        message, param, code = "The model provider rejected the request.", None, None
        try:
            error = json.loads(content).get("error")
        except (ValueError, AttributeError):
            error = None
        if isinstance(error, dict):
            message = _redact(str(error.get("message") or message), config)
            param = error.get("param") if isinstance(error.get("param"), str) else None
            code = error.get("code") if isinstance(error.get("code"), str) else None
        return InvalidRequest(message, param=param, openai_code=code)
    if status in (408, 504):
        return ProviderTimeout()
    if status in (429, 503):
        return ProviderUnavailable()
    return ProviderError()


def transport_failure(error: httpx2.TransportError) -> ParleyError:
    """The Parley error for a provider connection's failure (no detail of the provider's)."""
    if isinstance(error, httpx2.ConnectTimeout | httpx2.PoolTimeout | httpx2.ConnectError):
        return ProviderUnavailable()
    if isinstance(error, httpx2.TimeoutException):
        return ProviderTimeout()
    return ProviderError()


class OpenAIRelay:
    """Sends `/v1/chat/completions` requests to one OpenAI-compatible provider.

    Args:
        http: the shared provider HTTP client (timeouts from the settings).
        config: the provider's base URL and key.
        max_retries: retries of a failed request before its first byte.
    """

    def __init__(self, http: httpx2.AsyncClient, config: ProviderConfig, max_retries: int) -> None:
        self.http = http
        self.config = config
        self.max_retries = max_retries
        self.url = f"{config.base_url}/chat/completions"
        self.headers = {"content-type": "application/json"}
        if config.api_key:
            self.headers["authorization"] = f"Bearer {config.api_key}"

    async def open(self, body: Mapping[str, Any], *, stream: bool) -> httpx2.Response:
        """Send the request; the provider's 200 response, its body not yet read.

        Raises:
            ParleyError: the provider failed (after retries) or refused the request.
        """
        content = json.dumps(body, separators=(",", ":")).encode()
        headers = {**self.headers, "accept": "text/event-stream" if stream else "application/json"}
        attempt = 0
        while True:
            request = self.http.build_request("POST", self.url, content=content, headers=headers)
            try:
                response = await self.http.send(request, stream=True)
            except httpx2.TransportError as exc:
                if attempt >= self.max_retries:
                    logger.warning("provider request failed: %s", type(exc).__name__)
                    raise transport_failure(exc) from None
            else:
                if response.status_code == 200:
                    return response
                try:
                    answer = await response.aread()
                except httpx2.TransportError:
                    answer = b""
                finally:
                    await response.aclose()
                if response.status_code not in RETRY_STATUSES or attempt >= self.max_retries:
                    logger.warning("provider answered %s", response.status_code)
                    raise _rejection(response.status_code, answer, self.config)
            await anyio.sleep(min(BACKOFF_SECONDS * 2**attempt, MAX_BACKOFF_SECONDS))
            attempt += 1

    async def complete(self, body: Mapping[str, Any], call: MeteredCall) -> bytes:
        """A non-streamed completion: the provider's JSON, as it sent it.

        Raises:
            ParleyError: the provider failed.
        """
        response = await self.open(body, stream=False)
        try:
            content = await response.aread()
        except httpx2.TransportError as exc:
            raise transport_failure(exc) from None
        finally:
            await response.aclose()
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

    response: httpx2.Response
    call: MeteredCall
    include_usage: bool
    chunks: int = 0
    usage: TokenUsage | None = None
    _drop_blank: bool = False

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
                async for raw in self.response.aiter_bytes():
                    cut = raw.rfind(b"\n")
                    if cut == -1:
                        pending += raw
                        continue
                    block = pending + raw[: cut + 1] if pending else raw[: cut + 1]
                    pending = raw[cut + 1 :]
                    self.chunks += block.count(b"data:")
                    if self._drop_blank or _carries_usage(block):
                        block = self._take_usage(block)
                    if block:
                        yield block
                if pending:
                    yield pending
                status = "complete"
            except httpx2.TransportError as exc:
                status = "error"
                logger.warning("provider stream broke off: %s", type(exc).__name__)
                yield openai_error_event(transport_failure(exc))
        finally:
            with anyio.CancelScope(shield=True):
                await self.response.aclose()
            usage = self.usage
            await self.call.settle(
                status,
                input_tokens=usage.input_tokens if usage else None,
                output_tokens=usage.output_tokens if usage else self.chunks,
            )
