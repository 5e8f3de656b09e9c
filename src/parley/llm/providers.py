"""Catalog entries become Pydantic AI models here: OpenAI-compatible servers through
`OpenAIChatModel`, Anthropic through `AnthropicModel`, Gemini through `GoogleModel`, and
`offline:*` through the offline model.

Every provider's SDK client sends its requests through one shared `httpx2.AsyncClient`, created in
the app's lifespan with the connect and read timeouts from the settings (`httpx2` is the client the
provider SDKs take; legacy `httpx` clients are deprecated there). Retries are the SDKs' own, up to
`PROVIDER_MAX_RETRIES`. Nothing here reads the environment: keys and URLs come from `Settings`.

Each provider's SDK is imported when a model of that provider is first built: together they take
seconds to import, which a server that uses one of them (or only the offline model) need not pay.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx2

from parley import engines
from parley.core.errors import ServiceUnavailable
from parley.llm.catalog_config import ProviderConfig, configured_providers
from parley.llm.schemas import OFFLINE_PROVIDER, CatalogEntry
from parley.settings import Settings

OPENAI_HOST = "api.openai.com"
# The name responses from another OpenAI-compatible server carry (Ollama, vLLM, OpenRouter...).
OPENAI_COMPATIBLE_NAME = "openai-compatible"
# OpenAI's SDK insists on a key; local servers ignore it.
PLACEHOLDER_API_KEY = "not-needed"
MAX_CONNECTIONS = 200
MAX_KEEPALIVE_CONNECTIONS = 50

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from pydantic_ai.models import Model
    from pydantic_ai.profiles import ModelProfile
    from pydantic_ai.providers import Provider
    from pydantic_ai.providers.anthropic import AnthropicProvider
    from pydantic_ai.providers.google import GoogleProvider


# The modules each provider's models need, imported when its first model is built.
_PROVIDER_MODULES = {
    "openai": (
        "pydantic_ai.models.openai",
        "pydantic_ai.providers.openai",
        "pydantic_ai.providers.openai_compatible",
    ),
    "anthropic": ("pydantic_ai.models.anthropic", "pydantic_ai.providers.anthropic"),
    "gemini": ("pydantic_ai.models.google", "pydantic_ai.providers.google"),
}


def provider_modules(settings: Settings) -> list[str]:
    """The modules the configured providers' models will import (for a warm-up at start-up)."""
    return [
        module
        for config in configured_providers(settings)
        for module in _PROVIDER_MODULES.get(config.name, ())
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


def _openai_provider(
    config: ProviderConfig, settings: Settings, http_client: httpx2.AsyncClient
) -> Provider[AsyncOpenAI]:
    from pydantic_ai.providers.openai import OpenAIProvider
    from pydantic_ai.providers.openai_compatible import OpenAICompatibleProvider

    from parley.llm.openai_client import ParleyOpenAI

    client = ParleyOpenAI(
        api_key=config.api_key or PLACEHOLDER_API_KEY,
        base_url=config.base_url,
        http_client=http_client,
        max_retries=settings.provider_max_retries,
        timeout=provider_timeout(settings),
    )
    # OpenAI's own service gets OpenAI's model profiles; any other server the generic ones, so no
    # feature only OpenAI has is sent to Ollama or vLLM.
    if urlsplit(config.base_url).hostname == OPENAI_HOST:
        return OpenAIProvider(openai_client=client)
    return OpenAICompatibleProvider(OPENAI_COMPATIBLE_NAME, openai_client=client)


def _anthropic_provider(
    config: ProviderConfig, settings: Settings, http_client: httpx2.AsyncClient
) -> AnthropicProvider:
    from anthropic import AsyncAnthropic
    from pydantic_ai.providers.anthropic import AnthropicProvider

    client = AsyncAnthropic(
        api_key=config.api_key,
        base_url=config.base_url,
        http_client=http_client,
        max_retries=settings.provider_max_retries,
        timeout=provider_timeout(settings),
    )
    return AnthropicProvider(anthropic_client=client)


def _gemini_provider(
    config: ProviderConfig, settings: Settings, http_client: httpx2.AsyncClient
) -> GoogleProvider:
    from google.genai.types import HttpRetryOptions
    from pydantic_ai.providers.google import GoogleProvider

    return GoogleProvider(
        api_key=config.api_key,
        http_client=http_client,
        base_url=config.base_url if config.custom_base_url else None,
        retry_options=HttpRetryOptions(attempts=settings.provider_max_retries + 1),
    )


def _profile(entry: CatalogEntry) -> ModelProfile:
    from pydantic_ai.profiles import ModelProfile

    profile = ModelProfile(supports_tools=entry.supports_tools)
    if entry.context_window:
        profile["context_window"] = entry.context_window
    return profile


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
        self._openai: Provider[AsyncOpenAI] | None = None
        self._anthropic: AnthropicProvider | None = None
        self._gemini: GoogleProvider | None = None

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
        # The model library is imported with the first model built (or by the warm-up).
        engines.ensure_imported("pydantic_ai", *_PROVIDER_MODULES.get(entry.provider, ()))
        if entry.provider == OFFLINE_PROVIDER:
            engines.ensure_imported("parley.llm.offline.model")
            from parley.llm.offline.model import OfflineModel

            return OfflineModel(delay_seconds=self.settings.offline_model_delay_ms / 1000)
        config = self._config(entry.provider)
        profile = _profile(entry)
        if config.name == "openai":
            from pydantic_ai.models.openai import OpenAIChatModel

            if self._openai is None:
                self._openai = _openai_provider(config, self.settings, self.http_client)
            return OpenAIChatModel(entry.model_name, provider=self._openai, profile=profile)
        if config.name == "anthropic":
            from pydantic_ai.models.anthropic import AnthropicModel

            if self._anthropic is None:
                self._anthropic = _anthropic_provider(config, self.settings, self.http_client)
            return AnthropicModel(entry.model_name, provider=self._anthropic, profile=profile)
        from pydantic_ai.models.google import GoogleModel

        if self._gemini is None:
            self._gemini = _gemini_provider(config, self.settings, self.http_client)
        return GoogleModel(entry.model_name, provider=self._gemini, profile=profile)


def build_model(entry: CatalogEntry, settings: Settings, http_client: httpx2.AsyncClient) -> Model:
    """The Pydantic AI model of one catalog entry (see `ModelProviders`, which reuses providers)."""
    return ModelProviders(settings, http_client).model_for(entry)
