"""Anthropic: the `anthropic` SDK's client and Pydantic AI's `AnthropicModel`."""

from __future__ import annotations

import httpx2
from anthropic import AsyncAnthropic
from pydantic_ai.models import Model
from pydantic_ai.models.anthropic import AnthropicModel
from pydantic_ai.providers.anthropic import AnthropicProvider

from parley.llm.catalog_config import ProviderConfig
from parley.llm.schemas import CatalogEntry
from parley.llm.sdks.profiles import profile
from parley.settings import Settings


def provider(
    config: ProviderConfig,
    settings: Settings,
    http_client: httpx2.AsyncClient,
    timeout: httpx2.Timeout,
) -> AnthropicProvider:
    """The provider of every Anthropic model: one SDK client on the shared HTTP client."""
    client = AsyncAnthropic(
        api_key=config.api_key,
        base_url=config.base_url,
        http_client=http_client,
        max_retries=settings.provider_max_retries,
        timeout=timeout,
    )
    return AnthropicProvider(anthropic_client=client)


def model(entry: CatalogEntry, provider: AnthropicProvider) -> Model:
    """The entry's model on `provider`."""
    return AnthropicModel(entry.model_name, provider=provider, profile=profile(entry))
