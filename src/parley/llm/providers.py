"""Catalog entries become Pydantic AI models here: OpenAI-compatible servers through
`OpenAIChatModel`, Anthropic through `AnthropicModel`, Gemini through `GoogleModel`, and
`offline:*` through the offline model.

Every provider's SDK client sends its requests through one shared `httpx2.AsyncClient`, created in
the app's lifespan with the connect and read timeouts from the settings (`httpx2` is the client the
provider SDKs take; legacy `httpx` clients are deprecated there). Retries are the SDKs' own, up to
`PROVIDER_MAX_RETRIES`. Nothing here reads the environment: keys and URLs come from `Settings`.

Each provider's SDK and model class live in a module of `parley.llm.sdks`, reached through
`parley.engines` when a model of that provider is first built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx2

from parley import engines
from parley.core.errors import ServiceUnavailable
from parley.llm.catalog_config import ProviderConfig, configured_providers
from parley.llm.openai_relay import OpenAIRelay, RelayHttp
from parley.llm.schemas import OFFLINE_PROVIDER, CatalogEntry
from parley.settings import Settings

OPENAI_HOST = "api.openai.com"
MAX_CONNECTIONS = 200
MAX_KEEPALIVE_CONNECTIONS = 50

if TYPE_CHECKING:
    from pydantic_ai.models import Model

# The module of each provider's SDK and models (see `parley.llm.sdks`).
_PROVIDER_MODULES = {
    "openai": "parley.llm.sdks.openai",
    "anthropic": "parley.llm.sdks.anthropic",
    "gemini": "parley.llm.sdks.gemini",
}


def is_relayed(config: ProviderConfig) -> bool:
    """Whether a provider's models are reached through `parley.llm.openai_relay` rather than
    its SDK: an OpenAI-compatible server other than OpenAI's own."""
    return config.name == "openai" and urlsplit(config.base_url).hostname != OPENAI_HOST


def provider_modules(settings: Settings) -> list[str]:
    """The modules the configured providers' models will import (for a warm-up at start-up): not
    the `openai` SDK for an OpenAI-compatible server that the relay reaches (16 MB), unless a
    fallback model makes every turn go through Pydantic AI's models."""
    return [
        _PROVIDER_MODULES[config.name]
        for config in configured_providers(settings)
        if config.name in _PROVIDER_MODULES
        and not (is_relayed(config) and not settings.fallback_model)
    ]


def provider_timeout(settings: Settings) -> httpx2.Timeout:
    """The timeouts of provider requests: `PROVIDER_CONNECT_TIMEOUT_SECONDS` to connect,
    `PROVIDER_READ_TIMEOUT_SECONDS` between bytes read (and for writes and the pool)."""
    return httpx2.Timeout(
        settings.provider_read_timeout_seconds, connect=settings.provider_connect_timeout_seconds
    )


def create_provider_http_client(settings: Settings) -> httpx2.AsyncClient:
    """The HTTP client every provider shares; the caller owns it and closes it."""
    return httpx2.AsyncClient(
        timeout=provider_timeout(settings),
        limits=httpx2.Limits(
            max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS
        ),
        follow_redirects=False,
    )


class ProviderNotConfigured(ServiceUnavailable):
    """A catalog entry's provider has no configuration (it was removed since start-up)."""

    default_message = "This model's provider is not configured."


class ModelProviders:
    """Builds the Pydantic AI model of a catalog entry, with one provider (one SDK client) per
    configured provider, reused by every model and request.

    Args:
        settings: the providers' keys, URLs, retries and the offline model's pace.
        http_client: the shared HTTP client (see `create_provider_http_client`).
    """

    def __init__(self, settings: Settings, http_client: httpx2.AsyncClient) -> None:
        self.settings = settings
        self.http_client = http_client
        self._configs: dict[str, ProviderConfig] = {
            config.name: config for config in configured_providers(settings)
        }
        # One provider (one SDK client) per configured provider, built with its first model.
        self._providers: dict[str, Any] = {}
        # The relay's own client for OpenAI-compatible servers (`parley.llm.openai_relay`).
        self.relay_http = RelayHttp(
            connect_timeout=settings.provider_connect_timeout_seconds,
            read_timeout=settings.provider_read_timeout_seconds,
        )
        self._relays: dict[str, OpenAIRelay] = {}

    def relay(self, name: str) -> OpenAIRelay:
        """The relay to a configured OpenAI-compatible provider (one per provider).

        Raises:
            ProviderNotConfigured: it is not configured.
        """
        relay = self._relays.get(name)
        if relay is None:
            relay = self._relays[name] = OpenAIRelay(
                self.relay_http, self._config(name), self.settings.provider_max_retries
            )
        return relay

    async def aclose(self) -> None:
        """Close the relay's client (the SDKs' shared client belongs to whoever made it)."""
        await self.relay_http.aclose()

    def config(self, name: str) -> ProviderConfig | None:
        """A configured provider's URL and key, by name (`openai`, `anthropic`, `gemini`)."""
        return self._configs.get(name)

    def _config(self, name: str) -> ProviderConfig:
        config = self._configs.get(name)
        if config is None:
            raise ProviderNotConfigured()
        return config

    def model_for(self, entry: CatalogEntry) -> Model:
        """The model that answers for `entry`.

        Raises:
            ProviderNotConfigured: the entry's provider is not configured.
        """
        if entry.provider == OFFLINE_PROVIDER:
            offline_model: Model = engines.module("parley.llm.offline.model").OfflineModel(
                delay_seconds=self.settings.offline_model_delay_ms / 1000
            )
            return offline_model
        config = self._config(entry.provider)
        sdk = engines.module(_PROVIDER_MODULES[config.name])
        provider = self._providers.get(config.name)
        if provider is None:
            provider = self._providers[config.name] = sdk.provider(
                config, self.settings, self.http_client, provider_timeout(self.settings)
            )
        model: Model = sdk.model(entry, provider)
        return model


def build_model(entry: CatalogEntry, settings: Settings, http_client: httpx2.AsyncClient) -> Model:
    """The Pydantic AI model of one catalog entry (see `ModelProviders`, which reuses providers)."""
    return ModelProviders(settings, http_client).model_for(entry)
