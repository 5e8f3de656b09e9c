"""The audit log (CONTRACT.md section 11): what was done with each account, written by a consumer
of the events that tell of it, and read back by the audit API (`parley.events.audit_router`).

`audit_consumer()` (`events.audit`) writes one `AuditRecord` per sign-up, sign-in, guest upgrade,
password change, API key created or revoked, and tool call by the assistant or MCP: `action` is
the event's type without `parley.` and its version (`account.signed_in`, `tool.called`), with
its user, subject, time and data (bounded). The INSERT does nothing on an event already recorded
(`event_id` is unique), so even a second consumer of the same events could not write a line
twice; `consume` adds the consumer's `handled_events` row in the same transaction.

A record's id is a UUIDv7 of the event's own millisecond (`record_id`), so the log's order (newest
first, by id, which the indexes serve) is the order the events happened in, even when their
deliveries came in another.

`AuditLog` reads it: a user's own records (`readable(user_id)`, the start of every read of
them), or every record for admins.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Select, Table, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.accounts.authentication import Owner
from parley.accounts.events import (
    API_KEY_CREATED,
    API_KEY_REVOKED,
    PASSWORD_CHANGED,
    REGISTERED,
    SIGNED_IN,
    UPGRADED,
)
from parley.accounts.models import User
from parley.core.db import insert_of, new_id, utcnow
from parley.core.errors import Forbidden
from parley.core.pagination import CursorCodec, SortKey, paginate
from parley.events.bounds import bounded_json
from parley.events.consumers import Consumer, ReceivedEvent
from parley.events.models import ACTION_MAX_CHARS, SUBJECT_MAX_CHARS, AuditRecord
from parley.tools.events import TOOL_CALLED

AUDIT_CONSUMER = "events.audit"
AUDITED_TYPES = frozenset(
    {
        REGISTERED,
        SIGNED_IN,
        UPGRADED,
        PASSWORD_CHANGED,
        API_KEY_CREATED,
        API_KEY_REVOKED,
        TOOL_CALLED,
    }
)
# A record's details: strings cut to these characters, the whole to these bytes (a tool call's
# arguments are bounded tighter already, when its event is written).
DETAIL_CHARS = 1000
DETAILS_BYTES = 16 * 1024
NEWEST_FIRST = SortKey("-id", AuditRecord.id, descending=True, kind="uuid")

_AUDIT: Table = AuditRecord.__table__  # type: ignore[assignment]
_VERSIONED = re.compile(r"^parley\.(?P<action>.+)\.v[1-9][0-9]*$")
_LOW_80_BITS = (1 << 80) - 1


def action_of(event_type: str) -> str:
    """The action an event type records: `parley.account.signed_in.v1` -> `account.signed_in`."""
    match = _VERSIONED.match(event_type)
    action = match.group("action") if match else event_type
    return action[:ACTION_MAX_CHARS]


def record_id(event_id: uuid.UUID) -> uuid.UUID:
    """A new UUIDv7 in the millisecond of the event's own (a UUIDv7 too): its first 48 bits,
    then the fresh id's version, variant and random bits. An id of another kind: a fresh id."""
    fresh = new_id()
    if event_id.version != 7:
        return fresh
    return uuid.UUID(int=(event_id.int & ~_LOW_80_BITS) | (fresh.int & _LOW_80_BITS))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def audit_consumer() -> Consumer:
    """The consumer that writes the audit log (see the module docstring)."""

    async def handle(session: AsyncSession, event: ReceivedEvent) -> None:
        event_id = uuid.UUID(event.id)  # `consume` has checked it
        # The user as the database knows them: null for an account deleted since, which the
        # foreign key would otherwise refuse (and the event be retried forever).
        user_id = (
            select(User.id).where(User.id == event.parleyuser).scalar_subquery()
            if event.parleyuser is not None
            else None
        )
        details = bounded_json(event.data, max_chars=DETAIL_CHARS, max_bytes=DETAILS_BYTES)
        now = utcnow()
        await session.execute(
            insert_of(session, _AUDIT)
            .values(
                id=record_id(event_id),
                event_id=event_id,
                user_id=user_id,
                action=action_of(event.type),
                subject=event.subject[:SUBJECT_MAX_CHARS],
                time=_aware(event.time),
                details=details if isinstance(details, dict) else {"value": details},
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["event_id"])
        )

    return Consumer(AUDIT_CONSUMER, AUDITED_TYPES, handle)


# -- reading the log ------------------------------------------------------------------------------


def readable(user_id: uuid.UUID) -> Select[AuditRecord]:
    """The user's own records: the start of every read of them."""
    return select(AuditRecord).where(AuditRecord.user_id == user_id)


@dataclass(frozen=True, slots=True)
class AuditFilters:
    """What a list of records is narrowed to (every field optional).

    Attributes:
        action: exactly this action (`tool.called`).
        since: records of this time or later.
        until: records before this time.
    """

    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def apply(self, statement: Select[AuditRecord]) -> Select[AuditRecord]:
        """`statement` with the filters."""
        if self.action is not None:
            statement = statement.where(AuditRecord.action == self.action)
        if self.since is not None:
            statement = statement.where(AuditRecord.time >= self.since)
        if self.until is not None:
            statement = statement.where(AuditRecord.time < self.until)
        return statement


class AuditLog:
    """Reads of the audit log, over one database session."""

    def __init__(self, session: AsyncSession, codec: CursorCodec) -> None:
        self.session = session
        self.codec = codec

    async def _page(
        self, statement: Select[AuditRecord], *, cursor: str | None, limit: int
    ) -> tuple[Sequence[AuditRecord], str | None]:
        paged, finish = paginate(
            statement,
            sort=NEWEST_FIRST,
            id_column=AuditRecord.id,
            cursor=cursor,
            limit=limit,
            codec=self.codec,
        )
        rows = (await self.session.execute(paged)).scalars().all()
        return finish(rows)

    async def list_own(
        self, owner: Owner, *, filters: AuditFilters, cursor: str | None, limit: int
    ) -> tuple[Sequence[AuditRecord], str | None]:
        """A page of the owner's records, newest first.

        Raises:
            ValidationFailed: a bad cursor.
        """
        return await self._page(filters.apply(readable(owner.id)), cursor=cursor, limit=limit)

    async def list_all(
        self,
        admin: User,
        *,
        filters: AuditFilters,
        user_id: uuid.UUID | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[Sequence[AuditRecord], str | None]:
        """A page of every user's records (or `user_id`'s), newest first; admins only.

        Raises:
            Forbidden: the caller is no admin.
            ValidationFailed: a bad cursor.
        """
        if not admin.is_admin:
            raise Forbidden("Admins only.")
        statement = readable(user_id) if user_id is not None else select(AuditRecord)
        return await self._page(filters.apply(statement), cursor=cursor, limit=limit)
