"""The values the usage meter passes around: a `Reservation` (an estimate held against a user's
budget, on its own or drawn from a lease), a `UsageEntry` (what one chat reply or `/v1` call
used), and the `Hold`s and `Settle`s that the meter's batches write."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from parley.core.db import utcnow

if TYPE_CHECKING:
    from parley.usage.leases import Lease


@dataclass(frozen=True, slots=True)
class Reservation:
    """An estimate held against a user's budget; `id` is None when nothing was held of its own
    (the user has no budget, or the hold was drawn from `lease`)."""

    user_id: uuid.UUID
    amount_usd: Decimal
    id: uuid.UUID | None = None
    lease: Lease | None = None
    period: str | None = None


@dataclass(frozen=True, slots=True)
class UsageEntry:
    """What one chat reply or `/v1` call used, to be recorded when it settles."""

    user_id: uuid.UUID
    api_key_id: uuid.UUID | None
    source: str  # "chat" or "v1"
    model_id: str
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    latency_ms: int | None
    status: str  # "complete", "error", "cancelled", "interrupted"
    chat_id: uuid.UUID | None = None
    message_id: uuid.UUID | None = None
    # When the call ended: its record's time and the month its cost counts in, however long its
    # settle waited for a batch.
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class Hold:
    """A hold to take: `amount` against `budget` (`fit`: only if it fits whole, for a lease)."""

    user_id: uuid.UUID
    budget: Decimal
    amount: Decimal
    fit: bool = False
    message_id: uuid.UUID | None = None  # the chat reply it is for


@dataclass(frozen=True, slots=True)
class Settle:
    """A call to settle: its hold (if any) and what it used; or (`entry` None) only a lease to
    release, `returned` (which a call's settle can carry too), or room to give back from a
    lease, `shrink`."""

    reservation: Reservation | None
    entry: UsageEntry | None
    returned: uuid.UUID | None = None
    shrink: tuple[uuid.UUID, Decimal] | None = None
    attempt: int = 0  # of a lease's release that failed before
