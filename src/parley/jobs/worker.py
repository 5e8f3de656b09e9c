"""A worker: takes due jobs from the queue and runs them, up to `concurrency` at once.

Its loop claims as many jobs as it has free slots (one statement, `parley.jobs.repository.claim`),
runs each in a task of its own under the kind's timeout, and ends each attempt in a short
transaction: succeeded; queued again after a backoff (doubling per attempt, with full jitter);
or failed for good after `max_attempts`. It waits for work on three signals: a commit of this
process that enqueued jobs, PostgreSQL's `NOTIFY` (`parley.jobs.listener`), and its poll, which
also finds jobs scheduled for later. Alongside, it renews its running jobs' leases (a job it no
longer holds, because an admin cancelled it or its lease expired and another worker took it, is
stopped), puts back jobs whose worker died, and fires its periodic schedules.

`stop()` (the CLI's SIGTERM) stops claiming, lets running jobs finish for the grace period, then
cancels the rest and puts them back in the queue as if they never started.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from opentelemetry import propagate, trace
from sqlalchemy.exc import SQLAlchemyError

from parley.core.batching import GroupCommit
from parley.core.db import Database, utcnow
from parley.core.telemetry import get_tracer
from parley.jobs import repository
from parley.jobs.attempts import JobView, Run, backoff, describe
from parley.jobs.kinds import JobKinds
from parley.jobs.listener import PostgresListener
from parley.jobs.queue import local_wakeups
from parley.jobs.repository import ClaimedJob
from parley.jobs.schedules import Schedule, fire_schedules

logger = logging.getLogger(__name__)

# How often a job's progress is written at most (the last value is written with the next lease
# renewal, or when the job ends).
PROGRESS_WRITE_SECONDS = 1.0
# Retries of the statement that ends an attempt, when the database is briefly unavailable.
END_RETRIES = (0.2, 1.0, 3.0)
CANCEL_PREFIX = "cancel:"
# The most attempt ends written in one transaction.
END_BATCH_MAX = 100

# The workers of this process by id, so that a cancel made here reaches a running job at once.
_workers: set[Worker] = set()


@dataclass(frozen=True, slots=True)
class _End:
    """An attempt's end to write: "succeed", "fail" (with `error` and `retry_at`) or
    "release"."""

    job_id: uuid.UUID
    attempt: int
    how: str
    details: dict[str, Any]


def cancel_locally(job_id: uuid.UUID) -> None:
    """Stop the job if a worker of this process runs it (the database says it is cancelled)."""
    for worker in list(_workers):
        worker.stop_job(job_id)


def worker_name() -> str:
    """This worker's name in the jobs it takes: host, process id and a random suffix."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Runs the jobs of `queues` (every queue when None) that `kinds` knows.

    Args:
        database: where the queue is.
        kinds: the job kinds it runs, with their handlers.
        concurrency: the most jobs it runs at once.
        queues: the queues it takes jobs from (None: all).
        lease_seconds: a running job's lease, renewed every third of it.
        poll_seconds: how often it looks for due jobs when nothing wakes it.
        shutdown_seconds: how long `stop` lets running jobs finish.
        schedules: the periodic schedules it fires (every worker may fire them: each slot's job
            is enqueued once).
        companions: loops that run as long as the worker takes jobs (the events relay), each
            started by calling it.
    """

    def __init__(
        self,
        database: Database,
        kinds: JobKinds,
        *,
        concurrency: int = 4,
        queues: Sequence[str] | None = None,
        lease_seconds: float = 30.0,
        poll_seconds: float = 1.0,
        shutdown_seconds: float = 20.0,
        schedules: Sequence[Schedule] = (),
        name: str | None = None,
        companions: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    ) -> None:
        self.database = database
        self.kinds = kinds
        self.concurrency = concurrency
        self.queues = list(queues) if queues else None
        self.lease_seconds = lease_seconds
        self.poll_seconds = poll_seconds
        self.shutdown_seconds = shutdown_seconds
        self.schedules = list(schedules)
        self.companions = list(companions)
        self.name = name or worker_name()
        self._running: dict[uuid.UUID, Run] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._hurry = asyncio.Event()
        self._recovered_at = 0.0
        self.listener: PostgresListener | None = None
        # Attempts that end together share a transaction.
        self._ends: GroupCommit[_End, bool] = GroupCommit(
            self._write_ends, max_batch=END_BATCH_MAX, name="jobs-ends"
        )

    # -- life ---------------------------------------------------------------------------------

    @property
    def running_jobs(self) -> int:
        """How many jobs run here now."""
        return len(self._running)

    def start(self) -> None:
        """Start taking jobs (in tasks of their own, in a context free of the caller's)."""
        if self._tasks:
            return
        self._stopping = False
        self._wake = local_wakeups.subscribe()
        _workers.add(self)
        loops = [self._claim_loop(), self._lease_loop()]
        if self.schedules:
            loops.append(fire_schedules(self.database, self.schedules))
        loops.extend(companion() for companion in self.companions)
        if self.database.engine.dialect.name == "postgresql":
            self.listener = PostgresListener(self.database.engine, self._notified, self.wake)
            loops.append(self.listener.run())
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(coroutine, name=f"jobs-{index}", context=contextvars.Context())
            for index, coroutine in enumerate(loops)
        ]
        logger.info(
            "worker %s runs %d jobs at once from %s",
            self.name,
            self.concurrency,
            ", ".join(self.queues) if self.queues else "every queue",
        )

    def wake(self) -> None:
        """Look for due jobs now."""
        if self._wake is not None:
            self._wake.set()

    async def stop(self, grace_seconds: float | None = None) -> None:
        """Stop taking jobs; let running ones finish for `grace_seconds` (default: the
        worker's `shutdown_seconds`), then cancel them and put them back in the queue."""
        if not self._tasks:
            return
        self._stopping = True
        grace = self.shutdown_seconds if grace_seconds is None else grace_seconds
        claim_loop, *others = self._tasks
        # The claim loop ends by itself at its next turn (a claim it is making completes, so
        # that what it took is run or put back below, not left `running` until its lease ends).
        self.wake()
        try:
            async with asyncio.timeout(10):
                await asyncio.shield(claim_loop)
        except TimeoutError:
            claim_loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await claim_loop
        tasks: list[asyncio.Future[Any]] = [
            run.task for run in self._running.values() if run.task is not None
        ]
        if tasks and grace > 0 and not self._hurry.is_set():
            logger.info("worker %s lets %d jobs finish", self.name, len(tasks))
            hurried = asyncio.ensure_future(self._hurry.wait())
            finished = asyncio.ensure_future(asyncio.wait(tasks, timeout=grace))
            await asyncio.wait([hurried, finished], return_when=asyncio.FIRST_COMPLETED)
            hurried.cancel()
            finished.cancel()
        for run in list(self._running.values()):
            if run.task is not None and not run.task.done():
                run.stopped = "shutdown"
                run.task.cancel()
        leftover = [run.task for run in self._running.values() if run.task is not None]
        if leftover:
            await asyncio.gather(*leftover, return_exceptions=True)
        await self._ends.aclose()
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)
        self._tasks = []
        _workers.discard(self)
        logger.info("worker %s stopped", self.name)

    def hurry(self) -> None:
        """End `stop`'s grace period now (a second SIGTERM or Ctrl-C)."""
        self._hurry.set()

    def stop_job(self, job_id: uuid.UUID, reason: str = "cancelled") -> None:
        """Cancel the job's task if it runs here."""
        run = self._running.get(job_id)
        if run is not None and run.task is not None and not run.task.done() and not run.ending:
            run.stopped = reason
            run.task.cancel()

    def _notified(self, payload: str) -> None:
        if payload.startswith(CANCEL_PREFIX):
            with contextlib.suppress(ValueError):
                self.stop_job(uuid.UUID(payload.removeprefix(CANCEL_PREFIX)))
            return
        if self.queues is None or payload in self.queues:
            self.wake()

    # -- claiming -----------------------------------------------------------------------------

    async def _claim_loop(self) -> None:
        assert self._wake is not None  # noqa: S101 - set by start
        failures = 0
        while not self._stopping:
            self._wake.clear()
            free = self.concurrency - len(self._running)
            claimed: list[ClaimedJob] = []
            try:
                await self._recover_if_due()
                if free > 0:
                    claimed = await self._claim(free)
                failures = 0
            except (SQLAlchemyError, OSError):
                failures += 1
                logger.warning("worker %s cannot reach the queue", self.name, exc_info=True)
                await asyncio.sleep(min(30.0, self.poll_seconds * 2**failures))
                continue
            for job in claimed:
                self._start_run(job)
            if free > 0 and len(claimed) == free:
                continue  # there may be more: claim again once a slot frees
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await self._wake.wait()

    async def _claim(self, limit: int) -> list[ClaimedJob]:
        now = utcnow()
        async with self.database.sessionmaker() as session:
            if self.database.engine.dialect.name != "postgresql":
                # SQLite: look first (a read), so that an idle worker takes no write lock.
                if not await repository.any_due(session, queues=self.queues, now=now):
                    return []
                await session.commit()
            claimed = await repository.claim(
                session,
                worker=self.name,
                queues=self.queues,
                limit=limit,
                now=now,
                lease_until=repository.lease_end(now, self.lease_seconds),
            )
            await session.commit()
        return claimed

    async def _recover_if_due(self) -> None:
        """Put back the jobs whose lease expired, every quarter of a lease at the most."""
        if time.monotonic() - self._recovered_at < self.lease_seconds / 4:
            return
        self._recovered_at = time.monotonic()
        async with self.database.sessionmaker() as session:
            requeued, failed = await repository.recover_expired(session, utcnow())
            await session.commit()
        if requeued or failed:
            logger.warning(
                "%d jobs whose worker stopped were queued again, %d failed for good",
                requeued,
                failed,
            )

    # -- running ------------------------------------------------------------------------------

    def _start_run(self, job: ClaimedJob) -> None:
        bound = self.kinds.get(job.kind)
        run = Run(job, bound[0] if bound else None)
        self._running[job.id] = run
        run.task = asyncio.get_running_loop().create_task(
            self._run(run), name=f"job-{job.kind}-{job.id}", context=contextvars.Context()
        )

    async def _run(self, run: Run) -> None:
        job = run.job
        links = []
        if job.trace_context:
            linked = trace.get_current_span(propagate.extract(job.trace_context))
            if linked.get_span_context().is_valid:
                links.append(trace.Link(linked.get_span_context()))
        try:
            with get_tracer().start_as_current_span(
                f"job {job.kind}",
                kind=trace.SpanKind.CONSUMER,
                links=links,
                attributes={
                    "parley.job.id": str(job.id),
                    "parley.job.kind": job.kind,
                    "parley.job.queue": job.queue,
                    "parley.job.attempt": job.attempt,
                },
                record_exception=False,
                set_status_on_exception=False,
            ) as span:
                outcome = await self._attempt(run)
                if outcome is not None:
                    span.set_status(trace.StatusCode.ERROR, outcome)
        finally:
            self._running.pop(job.id, None)
            self.wake()

    async def _attempt(self, run: Run) -> str | None:
        """Run the handler and end the attempt; the error, if it failed."""
        job = run.job
        bound = self.kinds.get(job.kind)
        try:
            if bound is None:
                raise LookupError(f"worker {self.name} has no handler for {job.kind!r}")
            kind, handler = bound
            async with asyncio.timeout(kind.timeout_seconds):
                await handler(JobView(run, self.report_progress))
        except asyncio.CancelledError:
            if run.stopped == "shutdown":
                await self._end(run, "release")
                logger.info("job %s (%s) put back in the queue", job.id, job.kind)
                return None
            if run.stopped is None:  # the worker's own task was cancelled: let it end
                raise
            logger.info("job %s (%s) stopped: %s", job.id, job.kind, run.stopped)
            return run.stopped
        except TimeoutError:
            assert bound is not None  # noqa: S101 - a timeout needs a handler
            error = f"TimeoutError: the attempt ran longer than {bound[0].timeout_seconds:g} s"
            await self._fail(run, error)
            return error
        except Exception as exc:
            error = describe(exc)
            logger.warning(
                "job %s (%s) attempt %d failed: %s",
                job.id,
                job.kind,
                job.attempt,
                error,
                exc_info=not isinstance(exc, LookupError),
            )
            await self._fail(run, error)
            return error
        await self._end(run, "succeed")
        return None

    async def _fail(self, run: Run, error: str) -> None:
        job = run.job
        kind = run.kind
        retry_in = backoff(kind, job.attempt) if kind else 60.0
        retry_at = (
            utcnow() + timedelta(seconds=retry_in) if job.attempt < job.max_attempts else None
        )
        await self._end(run, "fail", error=error, retry_at=retry_at)

    async def _end(self, run: Run, how: str, **details: Any) -> None:
        """Write the attempt's end (with the other ends that arrive meanwhile, in one
        transaction), retrying briefly if the database is unavailable; if it stays so, the lease
        expires and the job runs again (at least once, never lost)."""
        job = run.job
        run.ending = True  # no longer stopped by a lost lease: its end is being written
        for attempt, pause in enumerate((*END_RETRIES, None)):
            try:
                held = await self._ends.submit(_End(job.id, job.attempt, how, details))
                if not held:
                    logger.info("job %s (%s) was no longer this worker's", job.id, job.kind)
                return
            except (SQLAlchemyError, OSError):
                if pause is None:
                    logger.error(
                        "cannot record the end of job %s (%s); it runs again once its lease "
                        "expires",
                        job.id,
                        job.kind,
                        exc_info=True,
                    )
                    return
                logger.warning("retrying the end of job %s (try %d)", job.id, attempt + 1)
                await asyncio.sleep(pause)

    async def _write_ends(self, ends: Sequence[_End]) -> list[bool]:
        """Write attempts' ends in one transaction: the successes in one statement."""
        now = utcnow()
        async with self.database.sessionmaker() as session:
            successes = [(end.job_id, end.attempt) for end in ends if end.how == "succeed"]
            held = await repository.succeed_many(session, self.name, successes, now)
            outcomes: list[bool] = []
            for end in ends:
                if end.how == "succeed":
                    outcomes.append(end.job_id in held)
                elif end.how == "release":
                    outcomes.append(
                        await repository.release(session, end.job_id, self.name, end.attempt, now)
                    )
                else:
                    outcomes.append(
                        await repository.fail(
                            session, end.job_id, self.name, end.attempt, now=now, **end.details
                        )
                    )
            await session.commit()
        return outcomes

    async def report_progress(self, run: Run, fraction: float) -> None:
        """Keep a job's progress; written at most once per `PROGRESS_WRITE_SECONDS`."""
        run.progress_value = min(1.0, max(0.0, float(fraction)))
        if time.monotonic() - run.progress_written_at >= PROGRESS_WRITE_SECONDS:
            await self._write_progress(run)

    async def _write_progress(self, run: Run) -> None:
        value = run.progress_value
        if value is None:
            return
        run.progress_value = None
        run.progress_written_at = time.monotonic()
        async with self.database.sessionmaker() as session:
            await repository.set_progress(session, run.job.id, self.name, run.job.attempt, value)
            await session.commit()

    # -- leases -------------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            if not self._running:
                continue
            try:
                await self._renew_leases()
            except (SQLAlchemyError, OSError):
                logger.warning("worker %s cannot renew its leases", self.name, exc_info=True)

    async def _renew_leases(self) -> None:
        runs = dict(self._running)
        now = utcnow()
        async with self.database.sessionmaker() as session:
            held = await repository.renew_leases(
                session,
                worker=self.name,
                job_ids=list(runs),
                lease_until=repository.lease_end(now, self.lease_seconds),
                now=now,
            )
            await session.commit()
        for job_id, run in runs.items():
            if job_id not in held:
                # Cancelled, or taken again after the lease expired: not this worker's to run.
                self.stop_job(job_id, "lost")
            elif run.progress_value is not None:
                await self._write_progress(run)
