"""Idempotent turns: an `Idempotency-Key` names the turn a request started, so that a retry
within 24 hours answers with the same turn instead of starting another.

The key is recorded in the turn's own transaction before anything else is written; of two
concurrent requests with one key, the unique index lets exactly one through and the other
replays the winner's turn. `TurnKeys` never commits nor rolls back: the turn's use case does, in
one place (`parley.turns.service`). `purge_expired_keys`, run by the `turns.purge_idempotency_keys`
job, is a use case of its own and commits.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from parley.core.db import Database, utcnow
from parley.core.errors import Conflict, ValidationFailed
from parley.turns import repository as idempotency
from parley.turns.models import IDEMPOTENCY_WINDOW, IdempotencyRecord


class ReplyInProgress(Conflict):
    """The chat already has a reply in progress."""

    default_message = "A reply is already in progress in this chat; stop it or wait for it."


class IdempotencyKeyReused(ValidationFailed):
    """The same idempotency key came with a different request."""

    code = "idempotency_key_reused"
    default_message = "This Idempotency-Key was used with a different request."


@dataclass(frozen=True, slots=True)
class StartedTurn:
    """A turn that was started, or found again by its idempotency key."""

    user_id: uuid.UUID
    chat_id: uuid.UUID
    user_message_id: uuid.UUID
    assistant_message_id: uuid.UUID


def request_fingerprint(kind: str, chat_id: uuid.UUID, body: dict[str, Any]) -> str:
    """A hash that tells whether a retried request is the same request."""
    canonical = json.dumps(
        {"kind": kind, "chat_id": str(chat_id), "body": body}, sort_keys=True, default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


class TurnKeys:
    """The idempotency keys of turns, over the turn's request session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        # An expired record of the key `replay` found: `reserve` replaces it. Not deleted there:
        # on SQLite a write takes the one write lock until the commit, and the turn's reads
        # come between the two.
        self._expired_record_id: uuid.UUID | None = None

    async def replay(
        self, user_id: uuid.UUID, key: str | None, fingerprint: str
    ) -> StartedTurn | None:
        """The turn an earlier request with this key started, if any (within 24 hours). The caller
        then ends its read transaction before it waits for the reply.

        Raises:
            IdempotencyKeyReused: the key came with a different request.
        """
        if key is None:
            return None
        record = await idempotency.find_idempotency_record(self.session, user_id, key)
        if record is None:
            return None
        if record.created_at < utcnow() - IDEMPOTENCY_WINDOW:
            self._expired_record_id = record.id
            return None
        if record.request_hash != fingerprint:
            raise IdempotencyKeyReused()
        return StartedTurn(
            user_id, record.chat_id, record.user_message_id, record.assistant_message_id
        )

    async def reserve(
        self, user_id: uuid.UUID, key: str | None, fingerprint: str, turn: StartedTurn
    ) -> bool:
        """Record the key before anything else is written; False when a concurrent request
        with the same key won (the caller must then roll this transaction back)."""
        if key is None:
            return True
        if self._expired_record_id is not None:
            await idempotency.delete_idempotency_record(self.session, self._expired_record_id)
            self._expired_record_id = None
        return await idempotency.insert_idempotency_record(
            self.session,
            IdempotencyRecord(
                user_id=user_id,
                key=key,
                request_hash=fingerprint,
                chat_id=turn.chat_id,
                user_message_id=turn.user_message_id,
                assistant_message_id=turn.assistant_message_id,
            ),
        )

    async def replay_after_race(
        self, user_id: uuid.UUID, key: str | None, fingerprint: str
    ) -> StartedTurn:
        """The turn of the concurrent request that took the key first (read after the caller
        rolled its own transaction back)."""
        replayed = await self.replay(user_id, key, fingerprint)
        if replayed is None:  # pragma: no cover - the key was just found taken
            raise ReplyInProgress()
        return replayed


async def purge_expired_keys(database: Database) -> None:
    """Forget idempotency keys past their 24 hours, so the table does not grow forever."""
    async with database.sessionmaker() as session:
        await idempotency.delete_idempotency_records_before(session, utcnow() - IDEMPOTENCY_WINDOW)
        await session.commit()
