"""The plan of one turn: everything its generation needs, prepared and committed by the turn flow,
and the prices it is charged at.

Free of any model library at import time (the types are for checking only), so that starting the
app does not import Pydantic AI until the first turn runs.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from parley.usage.pricing import cost_usd
from parley.usage.reservations import Reservation

if TYPE_CHECKING:
    from pydantic_ai.messages import ModelMessage
    from pydantic_ai.models import Model

    from parley.assistant.loop import BoundTool
    from parley.assistant.openai_step import OpenAICompatibleModel


@dataclass
class TurnPlan:
    """Everything a generation needs, prepared (and committed) by the turn flow."""

    chat_id: uuid.UUID
    user_id: uuid.UUID
    user_message_id: uuid.UUID
    assistant_message_id: uuid.UUID
    model_id: str
    model: Model
    input_price_per_mtok: Decimal
    output_price_per_mtok: Decimal
    instructions: str | None
    history: list[ModelMessage]
    prompt: str
    tools: list[BoundTool]
    max_steps: int
    title_from: str | None = None
    prompt_chars: int = 0
    fallback: FallbackPricing | None = None
    # The budget hold taken when the turn started (settled with the final save), and the API key
    # the turn was started with, for the usage record.
    reservation: Reservation | None = None
    api_key_id: uuid.UUID | None = None
    # The model as an OpenAI-compatible server's, streamed without Pydantic AI's model.
    openai: OpenAICompatibleModel | None = None


@dataclass(frozen=True, slots=True)
class FallbackPricing:
    """The fallback model of a turn: how to recognise its answer, and what it costs."""

    model_id: str
    model_name: str
    input_price_per_mtok: Decimal
    output_price_per_mtok: Decimal


def cost_of(plan: TurnPlan, input_tokens: int, output_tokens: int) -> Decimal:
    """The cost in USD at the catalog prices captured when the turn started."""
    return cost_usd(
        input_tokens,
        output_tokens,
        input_price_per_mtok=plan.input_price_per_mtok,
        output_price_per_mtok=plan.output_price_per_mtok,
    )


def answered_by_fallback(plan: TurnPlan, model_name: str | None) -> TurnPlan:
    """The plan as priced for the model that actually answered: when the fallback answered, its
    id and prices replace the first model's."""
    fallback = plan.fallback
    if fallback is None or model_name is None or model_name != fallback.model_name:
        return plan
    return dataclasses.replace(
        plan,
        model_id=fallback.model_id,
        input_price_per_mtok=fallback.input_price_per_mtok,
        output_price_per_mtok=fallback.output_price_per_mtok,
        fallback=None,
    )
