"""A client for an OpenAI-compatible provider's `/chat/completions`, shared by the `/v1` gateway's
pass-through and the chat turns' steps on such a server: the request goes out as JSON from the
provider's configured URL with its configured key (never from the caller), and the provider's
200 answer comes back unread, as a `RelayResponse` to read as bytes or as lines. The embedding
clients (`parley.llm.embedding_providers`) send through the same pool, retries and error mapping
(`post_with_retries`).

It sends through aiohttp's client (`RelayHttp`, one connection pool per worker), not the
`httpx2` client the provider SDKs share: on a streamed relay aiohttp spends a third to a quarter
of the CPU (`bench/findings.md`, "The gateway at a Node gateway's cost"). The timeouts are the
same settings: `PROVIDER_CONNECT_TIMEOUT_SECONDS` to connect, `PROVIDER_READ_TIMEOUT_SECONDS`
between bytes read and to wait for a pooled connection.

Failures before the first byte are retried like the provider SDKs do (connection errors, 408,
409, 429, 5xx; `PROVIDER_MAX_RETRIES`, with exponential backoff), then become 502
`provider_error`, 503 `provider_unavailable` or 504 `provider_timeout`; a provider's 400, 413 or
422 is the caller's fault and becomes `InvalidRequest` with the provider's message, param and
code. A provider's 401 or 403 means the operator's key is wrong: a 502. No message ever names the
provider's URL or key. A response closed before its end (the caller went away, or stopped) closes
its connection, so that the provider sees the request cancelled.
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.request
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from parley import __version__
from parley.core.errors import (
    InvalidRequest,
    ParleyError,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)
from parley.llm.catalog_config import ProviderConfig

logger = logging.getLogger(__name__)
RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})
CALLER_FAULT_STATUSES = frozenset({400, 413, 422})
BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 8.0
MAX_CONNECTIONS = 1000
KEEPALIVE_SECONDS = 30.0
# Some providers' fronts refuse a request that names no client.
USER_AGENT = f"parley/{__version__}"
# What a transport failure of the provider's connection can raise.
TRANSPORT_ERRORS = (aiohttp.ClientError, OSError, asyncio.TimeoutError)


def _redact(text: str, config: ProviderConfig) -> str:
    for secret in (config.api_key, config.base_url):
        if secret:
            text = text.replace(secret, "[redacted]")
    return text


def rejection_error(status: int, content: bytes, config: ProviderConfig) -> ParleyError:
    """The error for a provider's answer that is not a 200 (its body read from `{"error":
    {"message", "param", "code"}}`, the shape OpenAI's and Gemini's errors share)."""
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


def transport_failure(error: BaseException) -> ParleyError:
    """The Parley error for a provider connection's failure (no detail of the provider's): it
    could not connect (or wait for a pooled connection) 503, it went quiet 504, it broke 502."""
    if isinstance(error, aiohttp.ConnectionTimeoutError | aiohttp.ClientConnectorError):
        return ProviderUnavailable()
    if isinstance(error, asyncio.TimeoutError):
        return ProviderTimeout()
    return ProviderError()


class RelayHttp:
    """The worker's aiohttp client for OpenAI-compatible providers, made on first use (inside the
    running event loop) and closed with the app.

    Args:
        connect_timeout: seconds to open a connection.
        read_timeout: seconds between bytes read, and to wait for a free pooled connection.
    """

    def __init__(self, *, connect_timeout: float, read_timeout: float) -> None:
        self.timeout = aiohttp.ClientTimeout(
            total=None, connect=read_timeout, sock_connect=connect_timeout, sock_read=read_timeout
        )
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The shared session (one connection pool)."""
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=MAX_CONNECTIONS, keepalive_timeout=KEEPALIVE_SECONDS
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self.timeout,
                # Proxies are read from the environment once per provider (`env_proxy`): with
                # `trust_env`, aiohttp looks them up in a thread on every request.
                trust_env=False,
                # One pool serves every user: no provider's cookie is sent back on anyone's call.
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def aclose(self) -> None:
        """Close the pool (its connections with it)."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for `url` (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`,
    less `NO_PROXY`), as `httpx2` and the provider SDKs honour them."""
    parts = urlsplit(url)
    if parts.hostname is None or urllib.request.proxy_bypass(parts.hostname):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(parts.scheme) or proxies.get("all")


class RelayResponse:
    """A provider's 200 answer, its body not yet read: read it once, as `chunks()`, `lines()` or
    `read()`, then `close()` it (which closes the connection unless the body was read to its end).

    Reading raises the Parley error of a broken or silent connection (`transport_failure`).
    """

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._done = False

    @property
    def headers(self) -> Mapping[str, str]:
        """The provider's response headers."""
        return self._response.headers

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives (whatever is buffered at each read, never empty)."""
        content = self._response.content
        try:
            while True:
                chunk = await content.readany()
                if not chunk:
                    break
                yield chunk
        except TRANSPORT_ERRORS as exc:
            logger.warning("provider stream broke off: %s", type(exc).__name__)
            raise transport_failure(exc) from None
        self._done = True

    async def lines(self) -> AsyncIterator[str]:
        """The body's lines, without their line ends (`\\n` or `\\r\\n`), the last one included
        when it has none."""
        pending = b""
        async for chunk in self.chunks():
            if pending:
                chunk = pending + chunk
            cut = chunk.rfind(b"\n")
            if cut == -1:
                pending = chunk
                continue
            pending = chunk[cut + 1 :]
            for line in chunk[:cut].split(b"\n"):
                yield line.removesuffix(b"\r").decode("utf-8", "replace")
        if pending:
            yield pending.removesuffix(b"\r").decode("utf-8", "replace")

    async def read(self) -> bytes:
        """The whole body."""
        parts = [chunk async for chunk in self.chunks()]
        return b"".join(parts)

    def close(self) -> None:
        """Give the connection back to the pool when the body was read to its end; otherwise
        close it, which tells the provider the request is cancelled."""
        if self._done:
            self._response.release()
        else:
            self._response.close()


class OpenAIRelay:
    """Sends `/v1/chat/completions` requests (or another endpoint's) to one OpenAI-compatible
    provider.

    Args:
        http: the worker's relay client.
        config: the provider's base URL and key.
        max_retries: retries of a failed request before its first byte.
        path: the endpoint under the base URL (`/embeddings` for the embedding client).
    """

    def __init__(
        self,
        http: RelayHttp,
        config: ProviderConfig,
        max_retries: int,
        *,
        path: str = "/chat/completions",
    ) -> None:
        self.http = http
        self.config = config
        self.max_retries = max_retries
        self.url = f"{config.base_url}{path}"
        self.headers = {"content-type": "application/json", "user-agent": USER_AGENT}
        if config.api_key:
            self.headers["authorization"] = f"Bearer {config.api_key}"
        self.proxy = env_proxy(self.url)
        self._stream_headers = {**self.headers, "accept": "text/event-stream"}
        self._json_headers = {**self.headers, "accept": "application/json"}

    async def open(self, body: Mapping[str, Any], *, stream: bool) -> RelayResponse:
        """Send the request; the provider's 200 response, its body not yet read.

        Raises:
            ParleyError: the provider failed (after retries) or refused the request.
        """
        content = json.dumps(body, separators=(",", ":")).encode()
        headers = self._stream_headers if stream else self._json_headers
        return await post_with_retries(
            self.http,
            self.url,
            content,
            headers,
            proxy=self.proxy,
            config=self.config,
            max_retries=self.max_retries,
        )


async def post_with_retries(
    http: RelayHttp,
    url: str,
    content: bytes,
    headers: Mapping[str, str],
    *,
    proxy: str | None,
    config: ProviderConfig,
    max_retries: int,
    rejection: Callable[[int, bytes, ProviderConfig], ParleyError] = rejection_error,
) -> RelayResponse:
    """POST `content` to a provider's `url`, retried as the module's docstring says; its 200
    response, the body not yet read (the relay's requests and the embedding clients' share it).

    Args:
        rejection: the error for a final answer that is not a 200 (`rejection_error` unless
            the provider says more in its own words).

    Raises:
        ParleyError: the provider failed (after retries) or refused the request.
    """
    session = http.session()
    attempt = 0
    while True:
        try:
            response = await session.post(url, data=content, headers=headers, proxy=proxy)
        except TRANSPORT_ERRORS as exc:
            if attempt >= max_retries:
                logger.warning("provider request failed: %s", type(exc).__name__)
                raise transport_failure(exc) from None
        else:
            if response.status == 200:
                return RelayResponse(response)
            try:
                answer = await response.read()
            except TRANSPORT_ERRORS:
                answer = b""
            finally:
                response.release()
            if response.status not in RETRY_STATUSES or attempt >= max_retries:
                logger.warning("provider answered %s", response.status)
                raise rejection(response.status, answer, config)
        await asyncio.sleep(min(BACKOFF_SECONDS * 2**attempt, MAX_BACKOFF_SECONDS))
        attempt += 1
