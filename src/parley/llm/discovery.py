"""Asking the providers' servers which models they offer, once at start-up, for providers whose
models neither `<PROVIDER>_MODELS` nor the models file name.

OpenAI-compatible servers answer `GET <base>/models` (OpenAI, Ollama, vLLM, llama.cpp,
OpenRouter...), Anthropic `GET <base>/v1/models`, Gemini `GET <base>/v1beta/models`. A server that
cannot be reached or answers nonsense is logged and skipped: start-up never fails over it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import httpx2

from parley.llm.catalog_config import (
    DiscoveredModel,
    ModelsFileEntry,
    ProviderConfig,
    configured_providers,
)
from parley.settings import Settings

logger = logging.getLogger(__name__)

ANTHROPIC_VERSION = "2023-06-01"
# Start-up waits for the lists, so a server that accepts but never answers must not hold it long.
DISCOVERY_READ_TIMEOUT_SECONDS = 15.0
# Names of OpenAI's (and others') models that cannot chat: embeddings, speech, images, moderation.
NON_CHAT_MARKERS = (
    "embed",
    "tts",
    "whisper",
    "transcribe",
    "dall-e",
    "image",
    "moderation",
    "davinci",
    "babbage",
    "realtime",
    "sora",
)


class DiscoveryError(Exception):
    """A provider's model list could not be read."""


def _is_chat_model(name: str) -> bool:
    lowered = name.lower()
    return not any(marker in lowered for marker in NON_CHAT_MARKERS)


def _items(payload: Any, key: str) -> list[dict[str, Any]]:
    if not isinstance(payload, dict) or not isinstance(payload.get(key), list):
        raise DiscoveryError(f"the answer has no `{key}` list")
    return [item for item in payload[key] if isinstance(item, dict)]


async def _get_json(
    client: httpx2.AsyncClient,
    url: str,
    headers: Mapping[str, str],
    request_timeout: httpx2.Timeout,
) -> Any:
    try:
        response = await client.get(url, headers=dict(headers), timeout=request_timeout)
    except httpx2.HTTPError as exc:
        raise DiscoveryError(f"{type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        raise DiscoveryError(f"HTTP {response.status_code}")
    try:
        return response.json()
    except ValueError as exc:
        raise DiscoveryError("the answer is not JSON") from exc


async def _list_openai(
    client: httpx2.AsyncClient, provider: ProviderConfig, request_timeout: httpx2.Timeout
) -> list[DiscoveredModel]:
    headers = {"Authorization": f"Bearer {provider.api_key}"} if provider.api_key else {}
    payload = await _get_json(client, f"{provider.base_url}/models", headers, request_timeout)
    names = [str(item["id"]) for item in _items(payload, "data") if item.get("id")]
    return [DiscoveredModel(name) for name in names if _is_chat_model(name)]


async def _list_anthropic(
    client: httpx2.AsyncClient, provider: ProviderConfig, request_timeout: httpx2.Timeout
) -> list[DiscoveredModel]:
    headers = {"x-api-key": provider.api_key or "", "anthropic-version": ANTHROPIC_VERSION}
    payload = await _get_json(
        client, f"{provider.base_url}/v1/models?limit=1000", headers, request_timeout
    )
    return [
        DiscoveredModel(str(item["id"]), display_name=item.get("display_name") or None)
        for item in _items(payload, "data")
        if item.get("id")
    ]


async def _list_gemini(
    client: httpx2.AsyncClient, provider: ProviderConfig, request_timeout: httpx2.Timeout
) -> list[DiscoveredModel]:
    headers = {"x-goog-api-key": provider.api_key or ""}
    url = f"{provider.base_url}/v1beta/models?pageSize=1000"
    models: list[DiscoveredModel] = []
    for item in _items(await _get_json(client, url, headers, request_timeout), "models"):
        methods = item.get("supportedGenerationMethods") or []
        name = str(item.get("name", "")).removeprefix("models/")
        if not name or "generateContent" not in methods or not _is_chat_model(name):
            continue
        window = item.get("inputTokenLimit")
        models.append(
            DiscoveredModel(
                name,
                display_name=item.get("displayName") or None,
                context_window=window if isinstance(window, int) and window > 0 else None,
            )
        )
    return models


_LISTERS = {"openai": _list_openai, "anthropic": _list_anthropic, "gemini": _list_gemini}


async def list_provider_models(
    client: httpx2.AsyncClient, provider: ProviderConfig, request_timeout: httpx2.Timeout
) -> list[DiscoveredModel]:
    """The chat models `provider`'s server lists, in its order.

    Raises:
        DiscoveryError: the server cannot be reached or its answer cannot be read.
    """
    return await _LISTERS[provider.name](client, provider, request_timeout)


def providers_to_discover(
    settings: Settings, file_entries: Sequence[ModelsFileEntry]
) -> list[ProviderConfig]:
    """The configured providers whose chat models neither `<PROVIDER>_MODELS` nor the file names
    (an embedding entry in the file names no chat model)."""
    in_file = {entry.provider for entry in file_entries if not entry.is_embedding}
    return [
        provider
        for provider in configured_providers(settings)
        if not provider.models and provider.name not in in_file
    ]


async def discover_models(
    settings: Settings, client: httpx2.AsyncClient, file_entries: Sequence[ModelsFileEntry]
) -> dict[str, list[DiscoveredModel]]:
    """Ask every provider that needs it for its models, all at once.

    A provider that fails is logged with a warning and offers no models this time.
    """
    providers = providers_to_discover(settings, file_entries)
    request_timeout = httpx2.Timeout(
        min(settings.provider_read_timeout_seconds, DISCOVERY_READ_TIMEOUT_SECONDS),
        connect=settings.provider_connect_timeout_seconds,
    )

    async def one(provider: ProviderConfig) -> tuple[str, list[DiscoveredModel]]:
        try:
            models = await list_provider_models(client, provider, request_timeout)
        except DiscoveryError as exc:
            logger.warning(
                "could not list the models of %s at %s (%s); it offers none until the next "
                "start-up, or set %s_MODELS",
                provider.name,
                provider.base_url,
                exc,
                provider.name.upper(),
            )
            return provider.name, []
        if not models:
            logger.warning("%s at %s lists no chat models", provider.name, provider.base_url)
        return provider.name, models

    results = await asyncio.gather(*(one(provider) for provider in providers))
    return dict(results)
