"""Gemini: Google's `genai` SDK and Pydantic AI's `GoogleModel`."""

from __future__ import annotations

import httpx2
from google.genai.types import HttpRetryOptions
from pydantic_ai.models import Model
from pydantic_ai.models.google import GoogleModel
from pydantic_ai.providers.google import GoogleProvider

from parley.llm.catalog_config import ProviderConfig
from parley.llm.schemas import CatalogEntry
from parley.llm.sdks.profiles import profile
from parley.settings import Settings


def provider(
    config: ProviderConfig,
    settings: Settings,
    http_client: httpx2.AsyncClient,
    timeout: httpx2.Timeout,
) -> GoogleProvider:
    """The provider of every Gemini model, on the shared HTTP client (its timeouts are the
    client's: the SDK takes none of its own here)."""
    return GoogleProvider(
        api_key=config.api_key,
        http_client=http_client,
        base_url=config.base_url if config.custom_base_url else None,
        retry_options=HttpRetryOptions(attempts=settings.provider_max_retries + 1),
    )


def model(entry: CatalogEntry, provider: GoogleProvider) -> Model:
    """The entry's model on `provider`."""
    return GoogleModel(entry.model_name, provider=provider, profile=profile(entry))
