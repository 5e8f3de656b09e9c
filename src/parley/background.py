"""Parley's background work on the job queue: each job kind bound to its handler, and the
periodic schedules. `parley serve`'s in-process worker and `parley worker` (`run_worker`, here)
both run `build_worker`. `parley worker` builds the same services as the API server
(`parley.runtime`), then runs until SIGTERM or Ctrl-C: it stops taking jobs, lets running ones
finish for `WORKER_SHUTDOWN_SECONDS` (a second signal cuts that short), puts back the rest, and
exits.

- `chat.title_sweep`, every 3 seconds: a `chat.title` job for each chat whose first reply
  completed since (`parley.turns.titles`).
- `chat.title`: a title from the chat's model.
- `turns.sweep`, every third of `GENERATION_STALE_SECONDS` (at least 1 s): replies whose worker
  died are interrupted and billed, then budget holds whose request never settled are released (one
  job, in that order, because both touch the same holds).
- `turns.purge_idempotency_keys`, hourly: idempotency keys past their 24 hours.
- `accounts.purge_refresh_tokens`, hourly: refresh tokens past their expiry.
- `jobs.purge`, hourly: final jobs older than `JOB_RETENTION_DAYS`.
- `files.ingest`, after an upload: extract, chunk and embed the file (`parley.knowledge.ingestion`).
- `files.reembed_sweep`, every 5 minutes: queues `files.reembed` for each ready file embedded by
  another model than `EMBEDDING_MODEL`, which embeds its chunks again in place; and, with
  pgvector, copies into `embedding_vec` the vectors of chunks that have none there (written during
  an upgrade by a process that did not know the column).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import signal
from collections.abc import Callable, Coroutine, Sequence
from datetime import timedelta
from typing import Any

from parley.accounts.repository import delete_refresh_tokens_expired_before
from parley.core.db import utcnow
from parley.core.telemetry import configure_tracing
from parley.events import repository as events_repository
from parley.events.audit import audit_consumer
from parley.events.consumers import CONSUME_JOB, Consumers, consume_job
from parley.events.outbox import watch_events
from parley.events.relay import Relay
from parley.events.transport import open_transport
from parley.files.service import INGEST_JOB
from parley.jobs import repository as jobs_repository
from parley.jobs.kinds import JobKind, JobKinds, JobRun
from parley.jobs.queue import watch_enqueues
from parley.jobs.schedules import Schedule
from parley.jobs.worker import Worker
from parley.knowledge.ingestion import (
    REEMBED_JOB,
    REEMBED_SWEEP_JOB,
    Ingestion,
    fill_missing_vectors,
    queue_stale,
)
from parley.runtime import Runtime, open_runtime
from parley.settings import Settings
from parley.tasks.recurrence import recurrence_consumer
from parley.tasks.reminders import REMIND_JOB, Reminders
from parley.turns.idempotency import purge_expired_keys
from parley.turns.titles import (
    TITLE_JOB,
    TITLE_SWEEP_JOB,
    TITLE_SWEEP_SECONDS,
    ChatTitler,
    queue_titles,
)

logger = logging.getLogger(__name__)

# Periodic clean-up: one attempt each (the next slot is the retry), ahead of other work.
SWEEP_JOB = JobKind("turns.sweep", priority=50, max_attempts=1, timeout_seconds=300)
PURGE_IDEMPOTENCY_JOB = JobKind(
    "turns.purge_idempotency_keys", priority=20, max_attempts=1, timeout_seconds=600
)
PURGE_REFRESH_TOKENS_JOB = JobKind(
    "accounts.purge_refresh_tokens", priority=20, max_attempts=1, timeout_seconds=600
)
PURGE_JOBS_JOB = JobKind("jobs.purge", priority=20, max_attempts=1, timeout_seconds=600)
PURGE_EVENTS_JOB = JobKind("events.purge", priority=20, max_attempts=1, timeout_seconds=600)
HOURLY = 3600.0
# How soon after EMBEDDING_MODEL changes the files embedded by the old one are queued again.
REEMBED_SWEEP_SECONDS = 300.0


def job_kinds(runtime: Runtime) -> JobKinds:
    """Every kind Parley enqueues, bound to its handler over `runtime`'s services."""
    settings = runtime.settings
    database = runtime.database

    async def sweep(job: JobRun) -> None:
        # Replies whose worker died (no heartbeat for GENERATION_STALE_SECONDS): interrupted,
        # billed, their chats freed; then the holds whose request never settled.
        await runtime.turn_runner.sweep_interrupted()
        await job.progress(0.5)
        released = await runtime.usage_meter.release_expired()
        if released:
            logger.info("released %d expired budget holds", released)

    async def purge_idempotency_keys(job: JobRun) -> None:
        await purge_expired_keys(database)

    async def purge_refresh_tokens(job: JobRun) -> None:
        async with database.sessionmaker() as session:
            deleted = await delete_refresh_tokens_expired_before(session, utcnow())
            await session.commit()
        if deleted:
            logger.info("deleted %d expired refresh tokens", deleted)

    async def purge_jobs(job: JobRun) -> None:
        before = utcnow() - timedelta(days=settings.job_retention_days)
        async with database.sessionmaker() as session:
            deleted = await jobs_repository.purge_finished(session, before)
            await session.commit()
        if deleted:
            logger.info("deleted %d finished jobs", deleted)

    async def purge_events(job: JobRun) -> None:
        now = utcnow()
        before = now - timedelta(days=settings.events_retention_days)
        async with database.sessionmaker() as session:
            deleted = await events_repository.purge_delivered(session, before)
            forgotten = await events_repository.purge_handled(session, before)
            aged = 0
            if settings.audit_retention_days:
                aged = await events_repository.purge_audit(
                    session, now - timedelta(days=settings.audit_retention_days)
                )
            await session.commit()
        if deleted or forgotten or aged:
            logger.info(
                "deleted %d delivered events, %d handled-event records, %d audit lines",
                deleted,
                forgotten,
                aged,
            )

    kinds = JobKinds()
    kinds.handle(
        TITLE_JOB,
        ChatTitler(database, runtime.providers, runtime.catalog, settings, runtime.usage_meter),
    )
    kinds.handle(SWEEP_JOB, sweep)

    async def title_sweep(job: JobRun) -> None:
        await queue_titles(database)

    kinds.handle(TITLE_SWEEP_JOB, title_sweep)
    ingestion = Ingestion(database, settings, runtime.embeddings, runtime.extractor)
    kinds.handle(INGEST_JOB, ingestion.run)
    kinds.handle(REEMBED_JOB, ingestion.reembed)

    async def reembed_sweep(job: JobRun) -> None:
        queued = await queue_stale(database, runtime.embeddings.default().model_id)
        if queued:
            logger.info("queued %d files to embed again with the current model", queued)
        filled = await fill_missing_vectors(database)
        if filled:
            logger.info("gave %d chunks their pgvector vectors", filled)

    kinds.handle(REEMBED_SWEEP_JOB, reembed_sweep)
    kinds.handle(PURGE_IDEMPOTENCY_JOB, purge_idempotency_keys)
    kinds.handle(PURGE_REFRESH_TOKENS_JOB, purge_refresh_tokens)
    kinds.handle(PURGE_JOBS_JOB, purge_jobs)
    kinds.handle(PURGE_EVENTS_JOB, purge_events)
    kinds.handle(REMIND_JOB, Reminders(database).run)
    return kinds


def schedules(runtime: Runtime) -> list[Schedule]:
    """The periodic schedules."""
    settings = runtime.settings
    return [
        Schedule(
            "turns.sweep",
            SWEEP_JOB,
            every_seconds=max(1.0, settings.generation_stale_seconds / 3),
        ),
        Schedule("chat.title_sweep", TITLE_SWEEP_JOB, every_seconds=TITLE_SWEEP_SECONDS),
        Schedule("turns.purge_idempotency_keys", PURGE_IDEMPOTENCY_JOB, every_seconds=HOURLY),
        Schedule("accounts.purge_refresh_tokens", PURGE_REFRESH_TOKENS_JOB, every_seconds=HOURLY),
        Schedule("jobs.purge", PURGE_JOBS_JOB, every_seconds=HOURLY),
        Schedule("events.purge", PURGE_EVENTS_JOB, every_seconds=HOURLY),
        Schedule("files.reembed_sweep", REEMBED_SWEEP_JOB, every_seconds=REEMBED_SWEEP_SECONDS),
    ]


def event_consumers(runtime: Runtime) -> Consumers:
    """Parley's consumers of its events (docs/events.md "Consumers")."""
    return Consumers([recurrence_consumer(), audit_consumer()])


def events_companion(
    runtime: Runtime, consumers: Consumers
) -> Callable[[], Coroutine[Any, Any, None]]:
    """The loop that relays committed events to `EVENTS_BROKER` and, with a broker, feeds the
    consumers from it; on cancellation it closes the broker's connections."""

    async def run() -> None:
        transport = open_transport(runtime.settings, runtime.database, consumers)
        relay = Relay(runtime.database, transport.delivery)
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(relay.run(), name="events-relay")
                for index, loop in enumerate(transport.loops):
                    group.create_task(loop(), name=f"events-consumers-{index}")
        finally:
            await transport.close()

    return run


def build_worker(
    runtime: Runtime, *, concurrency: int | None = None, queues: Sequence[str] | None = None
) -> Worker:
    """A worker over `runtime` that runs every Parley job kind and fires the schedules."""
    settings = runtime.settings
    consumers = event_consumers(runtime)
    kinds = job_kinds(runtime)
    kinds.handle(CONSUME_JOB, consume_job(runtime.database, consumers))
    return Worker(
        runtime.database,
        kinds,
        concurrency=concurrency or settings.worker_concurrency,
        queues=queues,
        lease_seconds=settings.job_lease_seconds,
        poll_seconds=settings.job_poll_seconds,
        shutdown_seconds=settings.worker_shutdown_seconds,
        schedules=schedules(runtime),
        # Committed events are numbered and delivered beside the jobs (parley.events.relay).
        companions=[events_companion(runtime, consumers)],
    )


async def serve_jobs(
    settings: Settings, *, concurrency: int | None, queues: Sequence[str] | None
) -> None:
    """Run a worker until SIGTERM or SIGINT."""
    tracer_provider = configure_tracing(settings)
    watch_enqueues()
    watch_events()
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    async with open_runtime(settings) as runtime:
        worker = build_worker(runtime, concurrency=concurrency, queues=queues)

        def on_signal() -> None:
            if stopping.is_set():
                worker.hurry()  # a second signal: no more grace
            stopping.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal)
        await runtime.turn_runner.run_background()
        worker.start()
        try:
            await stopping.wait()
            logger.info("stopping the worker")
            await worker.stop()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
    tracer_provider.force_flush()


def run_worker(
    settings: Settings, *, concurrency: int | None, queues: Sequence[str] | None
) -> None:
    """`serve_jobs` on uvloop's event loop where it is installed."""
    coroutine = serve_jobs(settings, concurrency=concurrency, queues=queues)
    if importlib.util.find_spec("uvloop"):
        import uvloop

        uvloop.run(coroutine)
    else:
        asyncio.run(coroutine)
