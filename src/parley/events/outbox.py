"""Writing events: `add_event` puts a CloudEvent in the outbox as part of the caller's
transaction, so the event exists if and only if the change it tells of commits (`add_row_event`
for the usual one: a row changed, told as clients see it). When such a
session commits, this process's relays are woken at once (`relay_wakeups`); a relay in another
process finds the event at its next poll.

Event types are `parley.<noun>.<verb>.v<N>`; each has a schema in `parley.events.catalog`.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel
from sqlalchemy import Table, event, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from parley.core.db import new_id, utcnow
from parley.events.models import SUBJECT_MAX_CHARS, OutboxEvent
from parley.jobs.queue import LocalWakeups

EVENT_TYPE = re.compile(r"parley(?:\.[a-z][a-z_]*){2}\.v[1-9][0-9]*")
_RECORDED = "parley.events.recorded"

relay_wakeups = LocalWakeups()
_OUTBOX: Table = OutboxEvent.__table__  # type: ignore[assignment]
_INSERT = insert(_OUTBOX)


async def add_event(
    session: AsyncSession,
    event_type: str,
    *,
    subject: str,
    user_id: uuid.UUID | None,
    data: dict[str, Any],
    time: datetime | None = None,
) -> uuid.UUID:
    """Write an event to the outbox in `session`'s transaction (the caller commits); its id.

    Args:
        event_type: e.g. `parley.task.completed.v1`.
        subject: what the event is about, e.g. `tasks/<id>` (events of one subject are
            delivered in order).
        user_id: whose event it is (the feed and the CloudEvent's `parleyuser`).
        data: the payload, JSON-ready (its shape is the type's schema).
        time: when the change happened (default: now).

    Raises:
        ValueError: a malformed type or subject (a programming error, not user input).
    """
    if EVENT_TYPE.fullmatch(event_type) is None:
        raise ValueError(f"not an event type: {event_type!r}")
    if not subject or len(subject) > SUBJECT_MAX_CHARS:
        raise ValueError(f"an event subject has 1 to {SUBJECT_MAX_CHARS} characters")
    event_id = new_id()
    now = utcnow()
    # A prebuilt Core INSERT, not an ORM object: the row is never read back in this session,
    # and the unit of work's bookkeeping would cost a task update more than the INSERT itself.
    await session.execute(
        _INSERT,
        {
            "id": event_id,
            "type": event_type,
            "subject": subject,
            "user_id": user_id,
            "time": time or now,
            "data": data,
            "attempts": 0,
            "created_at": now,
            "updated_at": now,
        },
    )
    session.sync_session.info[_RECORDED] = True
    return event_id


class StoredRow(Protocol):
    """A stored row: every table has a UUID `id`."""

    @property
    def id(self) -> uuid.UUID: ...


async def add_row_event(
    session: AsyncSession,
    event_type: str,
    row: StoredRow,
    *,
    collection: str,
    view: type[BaseModel],
    user_id: uuid.UUID,
) -> uuid.UUID:
    """`add_event` for a change to one of a user's rows: the subject `<collection>/<row id>`,
    the data the row as clients see it (`view`, e.g. `TaskPublic`); the event's id.

    Args:
        event_type: e.g. `parley.task.updated.v1`.
        row: the row as it is now (or was, for a deletion).
        collection: the subject's first part, e.g. `tasks`.
        view: the public schema the data is validated from the row with.
        user_id: whose row it is.
    """
    return await add_event(
        session,
        event_type,
        subject=f"{collection}/{row.id}",
        user_id=user_id,
        data=view.model_validate(row).model_dump(mode="json"),
    )


def _after_commit(session: Session) -> None:
    if session.info.pop(_RECORDED, False):
        relay_wakeups.notify()


def _after_rollback(session: Session) -> None:
    session.info.pop(_RECORDED, None)


def watch_events() -> None:
    """Wake this process's relays when a session that added events commits (idempotent)."""
    if event.contains(Session, "after_commit", _after_commit):
        return
    event.listen(Session, "after_commit", _after_commit)
    event.listen(Session, "after_rollback", _after_rollback)
