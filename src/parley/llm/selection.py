"""The one place that picks the model for a turn: the catalog entry's model, the fallback that
answers when it fails, the transport, and the prices of whichever answers.

A turn gets a `ChosenModel`: the model step it streams through (`parley.llm.steps`) and, when
`FALLBACK_MODEL` is set, how to recognise and price the fallback's answer. An OpenAI-compatible
server other than OpenAI's own is streamed directly (`parley.llm.openai_step`), unless a fallback
is configured: Pydantic AI's `FallbackModel` tries the fallback in turn, so then every model goes
through Pydantic AI (`parley.llm.pydantic_step`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from parley import engines
from parley.core.errors import ValidationFailed
from parley.llm.openai_relay import OpenAIRelay
from parley.llm.providers import ModelProviders, is_relayed
from parley.llm.schemas import CatalogEntry
from parley.llm.service import LLMService
from parley.llm.steps import ModelStep

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OpenAICompatibleModel:
    """A catalog model served by an OpenAI-compatible server, reached through `relay`."""

    relay: OpenAIRelay
    model_name: str


@dataclass(frozen=True, slots=True)
class FallbackPricing:
    """The fallback model of a turn: how to recognise its answer, and what it costs."""

    model_id: str
    model_name: str
    input_price_per_mtok: Decimal
    output_price_per_mtok: Decimal


@dataclass(frozen=True, slots=True)
class ChosenModel:
    """The model step a turn streams through, and its fallback's pricing (if it has one)."""

    step: ModelStep
    fallback: FallbackPricing | None


def compatible_model(
    providers: ModelProviders, entry: CatalogEntry
) -> OpenAICompatibleModel | None:
    """The entry as an OpenAI-compatible server's model, if it is one (and not OpenAI's own)."""
    if entry.provider != "openai":
        return None
    config = providers.config("openai")
    if config is None or not is_relayed(config):
        return None
    return OpenAICompatibleModel(providers.relay("openai"), entry.model_name)


async def choose_model(
    llm: LLMService, entry: CatalogEntry, *, fallback_id: str | None
) -> ChosenModel:
    """The model step for a turn answered by `entry`, wrapped so that `fallback_id` answers when
    it fails (after its provider's own retries), if that is a usable catalog model.

    Raises:
        ProviderNotConfigured: the entry's provider is not configured.
    """
    if fallback_id and fallback_id != entry.id:
        try:
            fallback = await llm.resolve(fallback_id, field="FALLBACK_MODEL")
        except ValidationFailed:
            logger.warning("FALLBACK_MODEL %s is not an enabled catalog model", fallback_id)
        else:
            pricing = FallbackPricing(
                model_id=fallback.id,
                model_name=fallback.model_name,
                input_price_per_mtok=fallback.input_price_per_mtok,
                output_price_per_mtok=fallback.output_price_per_mtok,
            )
            both = engines.fallback_model(llm.model_for(entry), llm.model_for(fallback))
            return ChosenModel(engines.pydantic_ai_step(both), pricing)
    openai = compatible_model(llm.providers, entry)
    if openai is not None:
        return ChosenModel(engines.openai_compatible_step(openai), None)
    return ChosenModel(engines.pydantic_ai_step(llm.model_for(entry)), None)
