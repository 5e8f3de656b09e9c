"""The plan of one turn: everything its running turn needs, prepared and committed by the turn
service, and the prices it is charged at.

Free of any model library at import time (the types are for checking only; see `parley.engines`).
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from parley.llm.selection import FallbackPricing
from parley.usage.pricing import cost_usd
from parley.usage.reservations import Reservation

if TYPE_CHECKING:
    from pydantic_ai.messages import ModelMessage

    from parley.llm.steps import ModelStep
    from parley.tools.registry import BoundTool


@dataclass
class TurnPlan:
    """Everything a running turn needs, prepared (and committed) by the turn service."""

    chat_id: uuid.UUID
    user_id: uuid.UUID
    user_message_id: uuid.UUID
    assistant_message_id: uuid.UUID
    model_id: str
    step: ModelStep
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
