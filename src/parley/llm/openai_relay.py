"""A client for an OpenAI-compatible provider's `/chat/completions`, shared by the `/v1` gateway's
pass-through and the chat turns' steps on such a server: the request goes out as JSON from the
provider's configured URL with its configured key (never from the caller), and the provider's
200 answer comes back unread.

Failures before the first byte are retried like the provider SDKs do (connection errors, 408,
409, 429, 5xx; `PROVIDER_MAX_RETRIES`, with exponential backoff), then become 502
`provider_error`, 503 `provider_unavailable` or 504 `provider_timeout`; a provider's 400, 413 or
422 is the caller's fault and becomes `InvalidRequest` with the provider's message, param and
code. A provider's 401 or 403 means the operator's key is wrong: a 502. No message ever names the
provider's URL or key.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

import anyio
import httpx2

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
