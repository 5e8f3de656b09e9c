"""Putting work on the queue: `enqueue` adds a job inside the caller's transaction, so the job
exists if and only if the change that needs it commits.

The job carries the trace context of the code that enqueued it (its span links to that trace), an
optional idempotency key (a second enqueue with the same key adds nothing and answers the first
job's id) and its time to run. Workers learn of new jobs without waiting for their next poll: on
PostgreSQL through `NOTIFY`, which PostgreSQL delivers only when the transaction commits; in this
process through `LocalWakeups`, set once the session commits.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from opentelemetry import propagate
from sqlalchemy import Table, event, insert, select, text
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from parley.core.db import new_id, utcnow
from parley.jobs.kinds import JobKind, check_priority, check_queue
from parley.jobs.models import QUEUED, Job

NOTIFY_CHANNEL = "parley_jobs"
MAX_IDEMPOTENCY_KEY = 255
MAX_ENQUEUE_MANY = 10_000
_ENQUEUED = "parley.jobs.enqueued"


class LocalWakeups:
    """Wakes the subscribers of this process (its workers, its relays, its feeds) when a session
    that enqueued jobs (or added events) commits.

    Each subscriber's `asyncio.Event` is held weakly, with its loop: the subscription lasts as
    long as the subscriber keeps its event. (Holding a wrapper object weakly instead, as this
    once did, lost every subscription at once: nothing else referred to the wrapper, so a
    commit woke no one and the workers waited for their poll.)
    """

    def __init__(self) -> None:
        self._events: weakref.WeakKeyDictionary[asyncio.Event, asyncio.AbstractEventLoop] = (
            weakref.WeakKeyDictionary()
        )

    def subscribe(self) -> asyncio.Event:
        """An event set whenever jobs are committed in this process (keep a reference to it)."""
        wakeup = asyncio.Event()
        self._events[wakeup] = asyncio.get_running_loop()
        return wakeup

    @property
    def subscribers(self) -> int:
        """How many subscriptions are alive."""
        return len(self._events)

    def notify(self) -> None:
        """Set every subscriber's event (from any thread)."""
        for wakeup, loop in list(self._events.items()):
            if not loop.is_closed():
                loop.call_soon_threadsafe(wakeup.set)


local_wakeups = LocalWakeups()


def _after_commit(session: Session) -> None:
    if session.info.pop(_ENQUEUED, False):
        local_wakeups.notify()


def _after_rollback(session: Session) -> None:
    session.info.pop(_ENQUEUED, None)


def watch_enqueues() -> None:
    """Wake this process's workers when a session that enqueued jobs commits (idempotent)."""
    if event.contains(Session, "after_commit", _after_commit):
        return
    event.listen(Session, "after_commit", _after_commit)
    event.listen(Session, "after_rollback", _after_rollback)


def trace_carrier() -> dict[str, str] | None:
    """The current trace context as W3C headers (`traceparent`, `tracestate`), if there is one."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


# Built once: a statement made per call (`insert(Job).values(...)`) costs more to build than to
# run on SQLite (a turn's first reply enqueues its title job).
_JOBS: Table = Job.__table__  # type: ignore[assignment]
_INSERT = insert(_JOBS)
_INSERT_KEYED = {
    "postgresql": postgresql_insert(_JOBS)
    .on_conflict_do_nothing(index_elements=["idempotency_key"])
    .returning(_JOBS.c.id),
    "sqlite": sqlite_insert(_JOBS)
    .on_conflict_do_nothing(index_elements=["idempotency_key"])
    .returning(_JOBS.c.id),
}


def _job_values(
    kind: JobKind,
    args: Mapping[str, Any] | None,
    *,
    now: datetime,
    run_at: datetime | None,
    idempotency_key: str | None,
    queue: str,
    priority: int,
    max_attempts: int,
    trace_context: dict[str, str] | None,
) -> dict[str, Any]:
    return {
        "id": new_id(),
        "created_at": now,
        "updated_at": now,
        "kind": kind.name,
        "queue": queue,
        "priority": priority,
        "status": QUEUED,
        "args": dict(args or {}),
        "idempotency_key": idempotency_key,
        "attempts": 0,
        "max_attempts": max_attempts,
        "run_at": run_at or now,
        "progress": 0.0,
        "trace_context": trace_context,
    }


def _placement(
    kind: JobKind, queue: str | None, priority: int | None, max_attempts: int | None
) -> tuple[str, int, int]:
    """The job's queue, priority and attempts: the caller's, else the kind's, checked."""
    queue = check_queue(queue or kind.queue)
    priority = check_priority(kind.priority if priority is None else priority)
    attempts = kind.max_attempts if max_attempts is None else max_attempts
    if not 1 <= attempts <= 100:
        raise ValueError("max_attempts must be 1..100")
    return queue, priority, attempts


async def _announce(
    session: AsyncSession, queue: str, run_at: datetime | None, now: datetime
) -> None:
    """Wake the workers once the transaction commits: NOTIFY (PostgreSQL, for a job due now)
    and this process's workers."""
    if session.get_bind().dialect.name == "postgresql" and (run_at is None or run_at <= now):
        await session.execute(
            text("SELECT pg_notify(:channel, :queue)"),
            {"channel": NOTIFY_CHANNEL, "queue": queue},
        )
    session.sync_session.info[_ENQUEUED] = True


async def enqueue(
    session: AsyncSession,
    kind: JobKind,
    args: Mapping[str, Any] | None = None,
    *,
    run_at: datetime | None = None,
    idempotency_key: str | None = None,
    queue: str | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
) -> uuid.UUID:
    """Add a job of `kind` in the session's transaction (the caller commits).

    Args:
        args: what the handler needs, as JSON (ids, not objects).
        run_at: not before this time (default: now).
        idempotency_key: a job with this key already exists: add none and answer its id.
        queue, priority, max_attempts: instead of the kind's defaults.

    Returns:
        The id of the job (the existing one for a repeated idempotency key).

    Raises:
        ValueError: a queue, priority, attempt count or key out of bounds.
    """
    now = utcnow()
    queue, priority, attempts = _placement(kind, queue, priority, max_attempts)
    if idempotency_key is not None and not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise ValueError(f"an idempotency key has 1..{MAX_IDEMPOTENCY_KEY} characters")
    values = _job_values(
        kind,
        args,
        now=now,
        run_at=run_at,
        idempotency_key=idempotency_key,
        queue=queue,
        priority=priority,
        max_attempts=attempts,
        trace_context=trace_carrier(),
    )
    job_id: uuid.UUID | None = values["id"]
    if idempotency_key is None:
        await session.execute(_INSERT, values)
    else:
        dialect = session.get_bind().dialect.name
        job_id = (await session.execute(_INSERT_KEYED[dialect], values)).scalar_one_or_none()
        if job_id is None:  # the key's job exists: it is the answer
            return (
                await session.execute(select(Job.id).where(Job.idempotency_key == idempotency_key))
            ).scalar_one()
    await _announce(session, queue, run_at, now)
    assert job_id is not None  # noqa: S101 - set on both paths above
    return job_id


async def enqueue_many(
    session: AsyncSession,
    kind: JobKind,
    many_args: Sequence[Mapping[str, Any]],
    *,
    run_at: datetime | None = None,
    queue: str | None = None,
    priority: int | None = None,
    max_attempts: int | None = None,
) -> list[uuid.UUID]:
    """Add one job of `kind` per item of `many_args` in the session's transaction, in one
    multi-row INSERT (the caller commits). Like `enqueue`, without idempotency keys.

    Returns:
        The jobs' ids, in the order of `many_args`.

    Raises:
        ValueError: a queue, priority or attempt count out of bounds, or more than
            `MAX_ENQUEUE_MANY` jobs.
    """
    if len(many_args) > MAX_ENQUEUE_MANY:
        raise ValueError(f"at most {MAX_ENQUEUE_MANY} jobs per call")
    if not many_args:
        return []
    now = utcnow()
    queue, priority, attempts = _placement(kind, queue, priority, max_attempts)
    trace_context = trace_carrier()
    rows = [
        _job_values(
            kind,
            args,
            now=now,
            run_at=run_at,
            idempotency_key=None,
            queue=queue,
            priority=priority,
            max_attempts=attempts,
            trace_context=trace_context,
        )
        for args in many_args
    ]
    await session.execute(_INSERT, rows)
    await _announce(session, queue, run_at, now)
    return [row["id"] for row in rows]
