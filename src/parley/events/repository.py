"""Queries over the outbox. Never commits.

A user's events are read from `readable(user_id)` only; the relay's queries (every user's
pending events) are the one unscoped path, and they only number and deliver rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.core.db import rowcount
from parley.events.models import AuditRecord, HandledEvent, OutboxEvent

# Any constant: the relays of every process take it for the transaction that numbers a batch.
RELAY_LOCK_KEY = 0x70617274_65767473  # "partevts"


def readable(user_id: uuid.UUID) -> Select[OutboxEvent]:
    """The user's delivered (numbered) events: the start of every read of the feed."""
    return select(OutboxEvent).where(
        OutboxEvent.user_id == user_id, OutboxEvent.position.is_not(None)
    )


async def lock_relay(session: AsyncSession) -> None:
    """Serialize the relays for this transaction, before it reads what to number: PostgreSQL's
    advisory lock; on SQLite, the write lock, taken by a write that changes nothing (reads run
    outside a transaction there, so two relays could otherwise read the same batch)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": RELAY_LOCK_KEY})
    else:
        await session.execute(
            update(OutboxEvent)
            .where(text("0 = 1"))
            .values(attempts=OutboxEvent.attempts)
            .execution_options(synchronize_session=False)
        )


async def pending(session: AsyncSession, limit: int) -> list[OutboxEvent]:
    """Committed events not numbered yet, oldest first."""
    rows = await session.execute(
        select(OutboxEvent)
        .where(OutboxEvent.position.is_(None))
        .order_by(OutboxEvent.id)
        .limit(limit)
    )
    return list(rows.scalars().all())


async def last_position(session: AsyncSession) -> int:
    """The highest position given so far (0 before the first)."""
    found = await session.scalar(
        select(func.max(OutboxEvent.position)).where(OutboxEvent.position.is_not(None))
    )
    return int(found or 0)


async def record_failure(session: AsyncSession, event_ids: Sequence[uuid.UUID], error: str) -> None:
    """Count a failed delivery of the events, with its reason."""
    await session.execute(
        update(OutboxEvent)
        .where(OutboxEvent.id.in_(list(event_ids)))
        .values(attempts=OutboxEvent.attempts + 1, last_error=error[:2000])
        .execution_options(synchronize_session=False)
    )


async def user_events_after(
    session: AsyncSession, user_id: uuid.UUID, position: int, limit: int
) -> list[OutboxEvent]:
    """The user's events after `position`, in order."""
    rows = await session.execute(
        readable(user_id)
        .where(OutboxEvent.position > position)
        .order_by(OutboxEvent.position)
        .limit(limit)
    )
    return list(rows.scalars().all())


async def position_of(session: AsyncSession, user_id: uuid.UUID, event_id: uuid.UUID) -> int | None:
    """The position of one of the user's delivered events."""
    found = await session.scalar(
        select(OutboxEvent.position).where(
            OutboxEvent.id == event_id,
            OutboxEvent.user_id == user_id,
            OutboxEvent.position.is_not(None),
        )
    )
    return int(found) if found is not None else None


async def user_last_position(session: AsyncSession, user_id: uuid.UUID) -> int:
    """The position of the user's latest delivered event (0 when none)."""
    found = await session.scalar(
        select(func.max(OutboxEvent.position)).where(
            OutboxEvent.user_id == user_id, OutboxEvent.position.is_not(None)
        )
    )
    return int(found or 0)


def first_id_at(moment: datetime) -> uuid.UUID:
    """The smallest UUIDv7 of `moment`'s millisecond: every id made in an earlier millisecond
    is smaller."""
    milliseconds = int(moment.timestamp() * 1000)
    return uuid.UUID(int=(milliseconds << 80) | (0x7 << 76) | (0b10 << 62))


async def purge_delivered(session: AsyncSession, before: datetime) -> int:
    """Delete the delivered events written before `before` (a range of the primary key)."""
    result = await session.execute(
        delete(OutboxEvent).where(
            OutboxEvent.id < first_id_at(before), OutboxEvent.position.is_not(None)
        )
    )
    return rowcount(result)


async def purge_handled(session: AsyncSession, before: datetime) -> int:
    """Forget which events the consumers handled before `before` (the index by age): a copy of
    one redelivered after that would be handled again, so this runs with the events' own
    retention, past which the brokers and the relay no longer hold them."""
    result = await session.execute(delete(HandledEvent).where(HandledEvent.created_at < before))
    return rowcount(result)


async def purge_audit(session: AsyncSession, before: datetime) -> int:
    """Delete the audit lines of what happened before `before` (a line's id is a UUIDv7 of its
    event's millisecond: a range of the primary key)."""
    result = await session.execute(delete(AuditRecord).where(AuditRecord.id < first_id_at(before)))
    return rowcount(result)
