"""The queue's statements: claim due jobs, renew and check leases, end an attempt, put back jobs
whose worker died, and the admin's list, cancel and retry. Never commits: the worker and the
service own the transactions.

A claim is one `WITH due AS (SELECT ... FOR UPDATE SKIP LOCKED) UPDATE ... RETURNING`: on
PostgreSQL concurrent claimers skip each other's rows instead of waiting for them; on SQLite (which
has no row locks and renders no `FOR UPDATE`) the statement runs under the database's one write
lock, so two claims never see the same row as queued. Every statement that ends an attempt names
the worker and the attempt that claimed it, so a worker that lost its lease (the job was taken
again, cancelled, or retried) changes nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, func, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.core.db import insert_of, new_id, rowcount
from parley.core.pagination import CursorCodec, SortKey, paginate
from parley.jobs.models import (
    CANCELLED,
    FAILED,
    FINAL_STATUSES,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Job,
    JobSchedule,
)

JOBS_NEWEST_FIRST = SortKey("-created_at", Job.created_at, descending=True)
MAX_ERROR_CHARS = 4000
# Literal, not bound: PostgreSQL's planner matches a partial index's predicate only against
# literals, and a prepared statement's generic plan sees parameters.
_IS_QUEUED = text("jobs.status = 'queued'")
_IS_RUNNING = text("jobs.status = 'running'")


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """A job a worker has just taken: what to run, and which attempt this is."""

    id: uuid.UUID
    kind: str
    queue: str
    args: dict[str, Any]
    attempt: int
    max_attempts: int
    trace_context: dict[str, str] | None


async def claim(
    session: AsyncSession,
    *,
    worker: str,
    queues: Sequence[str] | None,
    limit: int,
    now: datetime,
    lease_until: datetime,
) -> list[ClaimedJob]:
    """Take up to `limit` due jobs of `queues` (all queues when None) for `worker`: highest
    priority first, then the longest due."""
    due = select(Job.id).where(_IS_QUEUED, Job.run_at <= now)
    if queues:
        due = due.where(Job.queue.in_(queues))
    # A CTE, not `id IN (subquery)`: PostgreSQL may run an IN subquery again for each row it
    # joins, locking and taking more than `limit` rows; a CTE with FOR UPDATE runs once.
    due_ids = (
        due.order_by(Job.priority.desc(), Job.run_at, Job.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
        .cte("due")
    )
    statement = (
        update(Job)
        .where(Job.id == due_ids.c.id)
        .values(
            status=RUNNING,
            attempts=Job.attempts + 1,
            started_at=now,
            finished_at=None,
            lease_expires_at=lease_until,
            worker=worker,
            updated_at=now,
        )
        .returning(
            Job.id,
            Job.kind,
            Job.queue,
            Job.args,
            Job.attempts,
            Job.max_attempts,
            Job.trace_context,
            Job.priority,
            Job.run_at,
        )
        .execution_options(synchronize_session=False)
    )
    rows = (await session.execute(statement)).all()
    rows = sorted(rows, key=lambda row: (-row.priority, row.run_at, row.id))
    return [
        ClaimedJob(
            id=row.id,
            kind=row.kind,
            queue=row.queue,
            args=row.args,
            attempt=row.attempts,
            max_attempts=row.max_attempts,
            trace_context=row.trace_context,
        )
        for row in rows
    ]


async def any_due(session: AsyncSession, *, queues: Sequence[str] | None, now: datetime) -> bool:
    """Whether a job of `queues` is due (a read: on SQLite it takes no write lock)."""
    due = select(Job.id).where(_IS_QUEUED, Job.run_at <= now)
    if queues:
        due = due.where(Job.queue.in_(queues))
    return (await session.execute(due.limit(1))).first() is not None


def _mine(job_id: uuid.UUID, worker: str, attempt: int) -> Any:
    return (Job.id == job_id) & (Job.worker == worker) & (Job.attempts == attempt) & _IS_RUNNING


async def renew_leases(
    session: AsyncSession,
    *,
    worker: str,
    job_ids: Sequence[uuid.UUID],
    lease_until: datetime,
    now: datetime,
) -> set[uuid.UUID]:
    """Extend the leases of `worker`'s running jobs; the ids of those it still holds (a job
    cancelled, or taken again after its lease expired, is not among them)."""
    if not job_ids:
        return set()
    statement = (
        update(Job)
        .where(Job.id.in_(job_ids), Job.worker == worker, _IS_RUNNING)
        .values(lease_expires_at=lease_until, updated_at=now)
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    )
    return set((await session.execute(statement)).scalars().all())


async def set_progress(
    session: AsyncSession, job_id: uuid.UUID, worker: str, attempt: int, progress: float
) -> None:
    """Record a running job's progress (0..1)."""
    await session.execute(
        update(Job)
        .where(_mine(job_id, worker, attempt))
        .values(progress=progress)
        .execution_options(synchronize_session=False)
    )


async def succeed_many(
    session: AsyncSession,
    worker: str,
    attempts: Sequence[tuple[uuid.UUID, int]],
    now: datetime,
) -> set[uuid.UUID]:
    """End several attempts (job id, attempt) as successes in one statement; the ids of those
    the worker still held."""
    if not attempts:
        return set()
    statement = (
        update(Job)
        .where(
            tuple_(Job.id, Job.attempts).in_(list(attempts)),
            Job.worker == worker,
            _IS_RUNNING,
        )
        .values(
            status=SUCCEEDED,
            progress=1.0,
            finished_at=now,
            lease_expires_at=None,
            error=None,
            updated_at=now,
        )
        .returning(Job.id)
        .execution_options(synchronize_session=False)
    )
    return set((await session.execute(statement)).scalars().all())


async def fail(
    session: AsyncSession,
    job_id: uuid.UUID,
    worker: str,
    attempt: int,
    *,
    error: str,
    retry_at: datetime | None,
    now: datetime,
) -> bool:
    """End the attempt as a failure: queued again at `retry_at`, or (None) `failed` for good.
    False if the worker no longer held the job."""
    values: dict[str, Any] = {
        "error": error[:MAX_ERROR_CHARS],
        "lease_expires_at": None,
        "updated_at": now,
    }
    if retry_at is None:
        values.update(status=FAILED, finished_at=now)
    else:
        values.update(status=QUEUED, run_at=retry_at, worker=None)
    result = await session.execute(
        update(Job)
        .where(_mine(job_id, worker, attempt))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


async def release(
    session: AsyncSession, job_id: uuid.UUID, worker: str, attempt: int, now: datetime
) -> bool:
    """Put a job back in the queue, due now, as if this attempt never started (its worker is
    stopping)."""
    result = await session.execute(
        update(Job)
        .where(_mine(job_id, worker, attempt))
        .values(
            status=QUEUED,
            attempts=Job.attempts - 1,
            run_at=now,
            lease_expires_at=None,
            worker=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


async def recover_expired(session: AsyncSession, now: datetime) -> tuple[int, int]:
    """Jobs whose lease expired (their worker died or hung): queued again if they have attempts
    left, else `failed`. The numbers requeued and failed."""
    expired = (Job.lease_expires_at < now) & _IS_RUNNING
    error = "The worker running this attempt stopped renewing its lease."
    requeued = await session.execute(
        update(Job)
        .where(expired, Job.attempts < Job.max_attempts)
        .values(
            status=QUEUED,
            run_at=now,
            lease_expires_at=None,
            worker=None,
            error=error,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    failed = await session.execute(
        update(Job)
        .where(expired, Job.attempts >= Job.max_attempts)
        .values(
            status=FAILED,
            finished_at=now,
            lease_expires_at=None,
            error=error,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return rowcount(requeued), rowcount(failed)


async def next_due_at(session: AsyncSession, queues: Sequence[str] | None) -> datetime | None:
    """When the soonest queued job of `queues` is due."""
    statement = select(func.min(Job.run_at)).where(_IS_QUEUED)
    if queues:
        statement = statement.where(Job.queue.in_(queues))
    value: datetime | None = (await session.execute(statement)).scalar_one_or_none()
    return value


async def get_job(session: AsyncSession, job_id: uuid.UUID) -> Job | None:
    """A job by id (admins only: jobs belong to no user)."""
    return await session.get(Job, job_id)


async def list_jobs(
    session: AsyncSession,
    *,
    codec: CursorCodec,
    cursor: str | None,
    limit: int,
    status: str | None,
    kind: str | None,
) -> tuple[list[Job], str | None]:
    """A page of jobs, newest first, optionally of one status and one kind."""
    statement: Select[Any] = select(Job)
    if status is not None:
        statement = statement.where(Job.status == status)
    if kind is not None:
        statement = statement.where(Job.kind == kind)
    statement, finish = paginate(
        statement, sort=JOBS_NEWEST_FIRST, id_column=Job.id, cursor=cursor, limit=limit, codec=codec
    )
    rows = (await session.execute(statement)).scalars().all()
    return finish(rows)


async def cancel(session: AsyncSession, job_id: uuid.UUID, now: datetime) -> bool:
    """Cancel a queued or running job (a running one's worker stops it when it sees this)."""
    result = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_((QUEUED, RUNNING)))
        .values(status=CANCELLED, finished_at=now, lease_expires_at=None, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


async def retry(session: AsyncSession, job_id: uuid.UUID, now: datetime) -> bool:
    """Queue a failed or cancelled job again, due now, with all its attempts."""
    result = await session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_((FAILED, CANCELLED)))
        .values(
            status=QUEUED,
            attempts=0,
            run_at=now,
            started_at=None,
            finished_at=None,
            lease_expires_at=None,
            worker=None,
            progress=0.0,
            error=None,
            updated_at=now,
        )
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


async def purge_finished(session: AsyncSession, before: datetime) -> int:
    """Delete the final jobs that ended before `before`; how many."""
    result = await session.execute(
        delete(Job)
        .where(Job.status.in_(FINAL_STATUSES), Job.finished_at < before)
        .execution_options(synchronize_session=False)
    )
    return rowcount(result)


async def take_slot(session: AsyncSession, name: str, slot_at: datetime, now: datetime) -> bool:
    """Move schedule `name` on to the slot starting at `slot_at`, unless it is there already;
    True for the one caller that moved it (the others wait for its commit, then see it moved)."""
    moved = await session.execute(
        update(JobSchedule)
        .where(JobSchedule.name == name, JobSchedule.last_slot_at < slot_at)
        .values(last_slot_at=slot_at, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    if rowcount(moved) == 1:
        return True
    insert = insert_of(session, JobSchedule)
    created = await session.execute(
        insert.values(id=new_id(), name=name, last_slot_at=slot_at, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(JobSchedule.id)
    )
    return created.scalar_one_or_none() is not None


def lease_end(now: datetime, lease_seconds: float) -> datetime:
    """When a lease taken or renewed at `now` expires."""
    return now + timedelta(seconds=lease_seconds)
