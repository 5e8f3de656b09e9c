"""OpenAI and OpenAI-compatible servers: the `openai` SDK's client (built by `ParleyOpenAI`) and
Pydantic AI's `OpenAIChatModel`."""

from __future__ import annotations

from urllib.parse import urlsplit

import httpx2
from openai import AsyncOpenAI
from pydantic_ai.models import Model
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers import Provider
from pydantic_ai.providers.openai import OpenAIProvider
from pydantic_ai.providers.openai_compatible import OpenAICompatibleProvider

from parley.llm.catalog_config import ProviderConfig
from parley.llm.openai_client import ParleyOpenAI
from parley.llm.providers import OPENAI_HOST
from parley.llm.schemas import CatalogEntry
from parley.llm.sdks.profiles import profile
from parley.settings import Settings

# The name responses from another OpenAI-compatible server carry (Ollama, vLLM, OpenRouter...).
OPENAI_COMPATIBLE_NAME = "openai-compatible"
# OpenAI's SDK insists on a key; local servers ignore it.
PLACEHOLDER_API_KEY = "not-needed"


def provider(
    config: ProviderConfig,
    settings: Settings,
    http_client: httpx2.AsyncClient,
    timeout: httpx2.Timeout,
) -> Provider[AsyncOpenAI]:
    """The provider of every OpenAI-compatible model: one SDK client on the shared HTTP client."""
    client = ParleyOpenAI(
        api_key=config.api_key or PLACEHOLDER_API_KEY,
        base_url=config.base_url,
        http_client=http_client,
        max_retries=settings.provider_max_retries,
        timeout=timeout,
    )
    # OpenAI's own service gets OpenAI's model profiles; any other server the generic ones, so no
    # feature only OpenAI has is sent to Ollama or vLLM.
    if urlsplit(config.base_url).hostname == OPENAI_HOST:
        return OpenAIProvider(openai_client=client)
    return OpenAICompatibleProvider(OPENAI_COMPATIBLE_NAME, openai_client=client)


def model(entry: CatalogEntry, provider: Provider[AsyncOpenAI]) -> Model:
    """The entry's model on `provider`."""
    return OpenAIChatModel(entry.model_name, provider=provider, profile=profile(entry))
