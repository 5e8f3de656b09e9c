"""The budget side of one `/v1` call: estimating it before it runs, and settling it exactly once
when it ends, whichever way it ends (answered, failed, cut, or abandoned by the client).

Prompt tokens are estimated at about four characters a token over the messages and tools (the
same rule as the offline model); output tokens at the request's `max_completion_tokens` /
`max_tokens`, else `BUDGET_RESERVE_OUTPUT_TOKENS` (an embeddings call: its inputs, and no output).
A call that failed before the provider produced anything costs nothing.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Literal, Protocol

from parley.gateway.schemas import ChatCompletionRequest
from parley.usage.meter import UsageMeter
from parley.usage.pricing import estimate_tokens, tokens_for_chars
from parley.usage.reservations import Reservation, UsageEntry

logger = logging.getLogger(__name__)
SOURCE = "v1"
MESSAGE_OVERHEAD_TOKENS = 4

CallStatus = Literal["complete", "error", "cancelled"]


class MeteredModel(Protocol):
    """What a call's record needs of its model: a chat catalog entry or an embedding one."""

    @property
    def id(self) -> str:
        """The catalog id the usage record names."""
        ...

    def cost_usd(self, input_tokens: int, output_tokens: int) -> Decimal:
        """What this many tokens cost at the model's prices."""
        ...


def estimate_prompt_tokens(request: ChatCompletionRequest) -> int:
    """About how many tokens the request's messages and tools take (four characters a token)."""
    characters = 0
    for message in request.messages:
        if isinstance(message.content, str):
            characters += len(message.content)
        elif message.content:
            characters += sum(len(part.text or "") for part in message.content)
        for call in message.tool_calls or ():
            characters += len(call.function.name) + len(call.function.arguments)
    tokens = tokens_for_chars(characters) + MESSAGE_OVERHEAD_TOKENS * len(request.messages)
    if request.tools:
        tools = [tool.model_dump(mode="json", exclude_none=True) for tool in request.tools]
        tokens += estimate_tokens(json.dumps(tools))
    return tokens


@dataclass
class MeteredCall:
    """A call holding a budget reservation, to be settled once.

    Attributes:
        input_estimate: the prompt tokens estimated before the call (used when the provider
            never reported usage).
    """

    meter: UsageMeter
    reservation: Reservation
    user_id: uuid.UUID
    api_key_id: uuid.UUID | None
    entry: MeteredModel
    input_estimate: int
    started_at: float = field(default_factory=time.monotonic)
    settled: bool = False

    async def settle(
        self, status: CallStatus, *, input_tokens: int | None, output_tokens: int
    ) -> None:
        """Release the reservation and record what the call used (a second call does nothing).

        The lease is settled at once and the record queued for the meter's next batch (see
        `UsageMeter.settle`), so nothing here waits, and a client that hangs up mid-stream (which
        cancels the response) cannot keep it from being recorded.

        Args:
            status: `complete`, `error`, or `cancelled` (the client went away).
            input_tokens: what the provider reported; None to use the estimate (none for an
                `error` with no output: the provider produced nothing).
            output_tokens: what the provider reported, or an estimate from what was streamed.
        """
        if self.settled:
            return
        self.settled = True
        if status == "error" and input_tokens is None and output_tokens == 0:
            # The provider refused or failed before producing anything: nothing is billed (the
            # record stays, with no tokens and no cost, and the hold is released).
            input_tokens = 0
        prompt = self.input_estimate if input_tokens is None else input_tokens
        usage = UsageEntry(
            user_id=self.user_id,
            api_key_id=self.api_key_id,
            source=SOURCE,
            model_id=self.entry.id,
            input_tokens=prompt,
            output_tokens=output_tokens,
            cost_usd=self.entry.cost_usd(prompt, output_tokens),
            latency_ms=round((time.monotonic() - self.started_at) * 1000),
            status=status,
        )
        self.meter.settle(self.reservation, usage)
