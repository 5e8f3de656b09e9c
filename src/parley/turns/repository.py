"""Queries over idempotency records. Never commits.

Every read is scoped to the user who sent the key: one user's key never answers another's.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.turns.models import IdempotencyRecord


async def find_idempotency_record(
    session: AsyncSession, user_id: uuid.UUID, key: str
) -> IdempotencyRecord | None:
    """The user's record for this key, whatever its age."""
    record: IdempotencyRecord | None = await session.scalar(
        select(IdempotencyRecord).where(
            IdempotencyRecord.user_id == user_id, IdempotencyRecord.key == key
        )
    )
    return record


async def delete_idempotency_record(session: AsyncSession, record_id: uuid.UUID) -> None:
    """Forget one record (its key may then be used again)."""
    await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == record_id))


async def insert_idempotency_record(session: AsyncSession, record: IdempotencyRecord) -> bool:
    """Write a record (flushed, not committed); False when the unique (user, key) index refuses
    it because the key is taken, and the session must then be rolled back."""
    session.add(record)
    try:
        await session.flush()
    except IntegrityError:
        return False
    return True


async def delete_idempotency_records_before(session: AsyncSession, cutoff: datetime) -> None:
    """Forget every record created before `cutoff`."""
    await session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < cutoff))
