"""Job-test helpers: a recording job kind, enqueueing in a transaction of its own, reading jobs."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select

from parley.core.db import Database
from parley.jobs.kinds import JobKind, JobKinds, JobRun
from parley.jobs.models import Job
from parley.jobs.queue import enqueue


class Recorder:
    """A handler that records each run (job id, attempt, args) and then runs `behaviour`."""

    def __init__(self, behaviour: Callable[[JobRun], Awaitable[None]] | None = None) -> None:
        self.runs: list[tuple[uuid.UUID, int, dict[str, Any]]] = []
        self.behaviour = behaviour
        self.started = asyncio.Event()

    async def __call__(self, job: JobRun) -> None:
        self.runs.append((job.id, job.attempt, dict(job.args)))
        self.started.set()
        if self.behaviour is not None:
            await self.behaviour(job)

    def ids(self) -> list[uuid.UUID]:
        return [job_id for job_id, _, _ in self.runs]


def kinds_of(*bound: tuple[JobKind, Callable[[JobRun], Awaitable[None]]]) -> JobKinds:
    kinds = JobKinds()
    for kind, handler in bound:
        kinds.handle(kind, handler)
    return kinds


async def enqueue_one(
    database: Database, kind: JobKind, args: Any = None, **options: Any
) -> uuid.UUID:
    async with database.sessionmaker() as session:
        job_id = await enqueue(session, kind, args, **options)
        await session.commit()
    return job_id


async def job_row(database: Database, job_id: uuid.UUID) -> Job:
    async with database.sessionmaker() as session:
        job = (await session.execute(select(Job).where(Job.id == job_id))).scalar_one()
        session.expunge(job)
        return job


async def jobs_of(database: Database, kind: str) -> list[Job]:
    async with database.sessionmaker() as session:
        rows = (await session.execute(select(Job).where(Job.kind == kind))).scalars().all()
        for row in rows:
            session.expunge(row)
        return list(rows)


def status_is(
    database: Database, job_id: uuid.UUID, *statuses: str
) -> Callable[[], Awaitable[Job | None]]:
    async def check() -> Job | None:
        job = await job_row(database, job_id)
        return job if job.status in statuses else None

    return check
