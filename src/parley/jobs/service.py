"""The admins' use cases over the queue: list jobs, cancel one, retry one.

A cancel of a running job reaches its worker at once when the worker is in this process or
listens on PostgreSQL, else at its next lease renewal (a third of `JOB_LEASE_SECONDS`).
"""

from __future__ import annotations

import uuid

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from parley.core.db import utcnow
from parley.core.errors import Conflict, NotFound
from parley.core.pagination import CursorCodec
from parley.core.telemetry import traced
from parley.jobs import repository
from parley.jobs.models import Job
from parley.jobs.queue import NOTIFY_CHANNEL, local_wakeups
from parley.jobs.worker import CANCEL_PREFIX, cancel_locally


class JobService:
    """Admin use cases over the route's session (the route checks the caller is an admin)."""

    def __init__(self, session: AsyncSession, codec: CursorCodec) -> None:
        self.session = session
        self.codec = codec

    async def list_jobs(
        self, *, status: str | None, kind: str | None, cursor: str | None, limit: int
    ) -> tuple[list[Job], str | None]:
        """A page of jobs, newest first."""
        return await repository.list_jobs(
            self.session, codec=self.codec, cursor=cursor, limit=limit, status=status, kind=kind
        )

    async def _job(self, job_id: uuid.UUID) -> Job:
        job = await repository.get_job(self.session, job_id)
        if job is None:
            raise NotFound("No such job.")
        return job

    async def _notify(self, payload: str) -> None:
        if self.session.get_bind().dialect.name == "postgresql":
            await self.session.execute(
                text("SELECT pg_notify(:channel, :payload)"),
                {"channel": NOTIFY_CHANNEL, "payload": payload},
            )

    @traced(name="jobs.cancel")
    async def cancel(self, job_id: uuid.UUID) -> Job:
        """Cancel a queued or running job.

        Raises:
            NotFound: no such job.
            Conflict: the job has ended already.
        """
        job = await self._job(job_id)
        status = job.status  # read before a rollback expires it
        if not await repository.cancel(self.session, job_id, utcnow()):
            await self.session.rollback()
            raise Conflict(f"The job is {status}: only queued and running jobs can be cancelled.")
        await self._notify(CANCEL_PREFIX + str(job_id))
        await self.session.refresh(job)  # as this change left it, not as a worker makes it next
        await self.session.commit()
        cancel_locally(job_id)
        return job

    @traced(name="jobs.retry")
    async def retry(self, job_id: uuid.UUID) -> Job:
        """Queue a failed or cancelled job again, due now, with all its attempts.

        Raises:
            NotFound: no such job.
            Conflict: the job is not failed or cancelled.
        """
        job = await self._job(job_id)
        status, queue = job.status, job.queue  # read before a rollback expires them
        if not await repository.retry(self.session, job_id, utcnow()):
            await self.session.rollback()
            raise Conflict(f"The job is {status}: only failed and cancelled jobs can be retried.")
        await self._notify(queue)
        await self.session.refresh(job)  # as this change left it, not as a worker makes it next
        await self.session.commit()
        local_wakeups.notify()
        return job
