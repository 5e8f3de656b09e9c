"""The Pydantic AI model profile of a catalog entry, for every provider's model."""

from __future__ import annotations

from pydantic_ai.profiles import ModelProfile

from parley.llm.schemas import CatalogEntry


def profile(entry: CatalogEntry) -> ModelProfile:
    """What Parley knows of a catalog model: whether it takes tools, and its context window."""
    result = ModelProfile(supports_tools=entry.supports_tools)
    if entry.context_window:
        result["context_window"] = entry.context_window
    return result
