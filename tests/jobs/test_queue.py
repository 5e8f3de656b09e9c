"""The job queue in one process, on the test database (SQLite or PostgreSQL): jobs run once with
their arguments, fail and retry with backoff up to their attempts, time out, keep to their time
and their idempotency key, exist only if their transaction commits, report progress, are taken
again once a dead worker's lease expires, and are finished or put back when their worker stops."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from parley.core.db import Database, utcnow
from parley.jobs import repository
from parley.jobs.kinds import JobKind, JobRun
from parley.jobs.models import Job
from parley.jobs.queue import MAX_ENQUEUE_MANY, enqueue, enqueue_many
from parley.jobs.worker import backoff
from tests.fixtures.polling import wait_for
from tests.jobs.conftest import WorkerFactory
from tests.jobs.helpers import Recorder, enqueue_one, job_row, jobs_of, kinds_of, status_is

ECHO = JobKind("test.echo", max_attempts=3, backoff_seconds=0.2)


async def test_a_job_runs_once_with_its_arguments_and_succeeds(
    database: Database, start_worker: WorkerFactory
) -> None:
    recorder = Recorder()
    start_worker(kinds_of((ECHO, recorder)))
    job_id = await enqueue_one(database, ECHO, {"n": 7, "names": ["a"]})
    job = await wait_for(status_is(database, job_id, "succeeded"))
    assert recorder.runs == [(job_id, 1, {"n": 7, "names": ["a"]})]
    assert job.attempts == 1
    assert job.progress == 1.0
    assert job.error is None
    assert job.started_at is not None
    assert job.finished_at is not None
    assert job.started_at >= job.run_at


async def test_a_failing_job_is_retried_with_backoff_then_fails_with_its_error(
    database: Database, start_worker: WorkerFactory
) -> None:
    starts: list[float] = []

    async def always_fails(job: JobRun) -> None:
        starts.append(time.monotonic())
        raise RuntimeError(f"attempt {job.attempt} broke")

    start_worker(kinds_of((ECHO, always_fails)))
    job_id = await enqueue_one(database, ECHO)
    job = await wait_for(status_is(database, job_id, "failed"))
    assert job.attempts == 3
    assert len(starts) == 3
    assert job.error == "RuntimeError: attempt 3 broke"
    assert job.finished_at is not None
    # Each wait is at least half of the doubling backoff (0.2 s, then 0.4 s).
    assert starts[1] - starts[0] >= 0.1
    assert starts[2] - starts[1] >= 0.2


def test_backoff_doubles_per_attempt_within_its_jitter_and_its_cap() -> None:
    kind = JobKind("test.backoff", backoff_seconds=10, max_backoff_seconds=60)
    for attempt, ceiling in ((1, 10), (2, 20), (3, 40), (4, 60), (9, 60)):
        waits = [backoff(kind, attempt) for _ in range(200)]
        assert all(ceiling / 2 <= wait <= ceiling for wait in waits)
        assert max(waits) - min(waits) > ceiling / 10  # jittered, not one fixed value


async def test_a_job_that_succeeds_on_a_later_attempt_keeps_no_error(
    database: Database, start_worker: WorkerFactory
) -> None:
    async def flaky(job: JobRun) -> None:
        if job.attempt == 1:
            raise ConnectionError("the upstream hung up")

    recorder = Recorder(flaky)
    start_worker(kinds_of((ECHO, recorder)))
    job_id = await enqueue_one(database, ECHO)
    job = await wait_for(status_is(database, job_id, "succeeded"))
    assert [attempt for _, attempt, _ in recorder.runs] == [1, 2]
    assert job.attempts == 2
    assert job.error is None


async def test_an_attempt_past_its_kinds_timeout_fails_as_a_timeout(
    database: Database, start_worker: WorkerFactory
) -> None:
    slow = JobKind("test.slow", max_attempts=1, timeout_seconds=0.2)

    async def sleeps(job: JobRun) -> None:
        await asyncio.sleep(30)

    start_worker(kinds_of((slow, sleeps)))
    started = time.monotonic()
    job_id = await enqueue_one(database, slow)
    job = await wait_for(status_is(database, job_id, "failed"))
    assert time.monotonic() - started < 10
    assert job.error is not None
    assert job.error.startswith("TimeoutError")
    assert "0.2 s" in job.error


async def test_a_kind_no_worker_knows_fails_after_its_attempts(
    database: Database, start_worker: WorkerFactory
) -> None:
    unknown = JobKind("test.unknown", max_attempts=1)
    start_worker(kinds_of((ECHO, Recorder())))
    job_id = await enqueue_one(database, unknown)
    job = await wait_for(status_is(database, job_id, "failed"))
    assert job.error is not None
    assert "no handler for 'test.unknown'" in job.error


async def test_the_same_idempotency_key_makes_one_job(
    database: Database, start_worker: WorkerFactory
) -> None:
    async with database.sessionmaker() as session:
        first = await enqueue(session, ECHO, {"n": 1}, idempotency_key="report:42")
        again = await enqueue(session, ECHO, {"n": 2}, idempotency_key="report:42")
        await session.commit()
    later = await enqueue_one(database, ECHO, {"n": 3}, idempotency_key="report:42")
    other = await enqueue_one(database, ECHO, {"n": 4}, idempotency_key="report:43")
    assert first == again == later != other
    recorder = Recorder()
    start_worker(kinds_of((ECHO, recorder)))
    await wait_for(status_is(database, other, "succeeded"))
    await wait_for(status_is(database, first, "succeeded"))
    assert sorted(args["n"] for _, _, args in recorder.runs) == [1, 4]


async def test_concurrent_enqueues_with_one_key_make_one_job(database: Database) -> None:
    ids = await asyncio.gather(
        *(enqueue_one(database, ECHO, {"n": n}, idempotency_key="once") for n in range(8))
    )
    assert len(set(ids)) == 1
    assert len(await jobs_of(database, ECHO.name)) == 1


async def test_a_job_scheduled_for_later_does_not_run_early(
    database: Database, start_worker: WorkerFactory
) -> None:
    recorder = Recorder()
    start_worker(kinds_of((ECHO, recorder)), poll_seconds=0.05)
    run_at = utcnow() + timedelta(seconds=1.5)
    job_id = await enqueue_one(database, ECHO, run_at=run_at)
    now_id = await enqueue_one(database, ECHO)
    await wait_for(status_is(database, now_id, "succeeded"))
    await asyncio.sleep(0.5)
    assert (await job_row(database, job_id)).status == "queued"
    job = await wait_for(status_is(database, job_id, "succeeded"), within=10)
    assert job.started_at is not None
    assert job.started_at >= run_at


async def test_a_job_enqueued_in_a_rolled_back_transaction_never_runs(
    database: Database, start_worker: WorkerFactory
) -> None:
    recorder = Recorder()
    start_worker(kinds_of((ECHO, recorder)))
    async with database.sessionmaker() as session:
        await enqueue(session, ECHO, {"kept": False})
        await session.rollback()
    kept = await enqueue_one(database, ECHO, {"kept": True})
    await wait_for(status_is(database, kept, "succeeded"))
    await asyncio.sleep(0.3)
    assert [args for _, _, args in recorder.runs] == [{"kept": True}]
    assert len(await jobs_of(database, ECHO.name)) == 1


async def test_higher_priority_runs_first_and_queues_are_kept_apart(
    database: Database, start_worker: WorkerFactory
) -> None:
    recorder = Recorder()
    low = await enqueue_one(database, ECHO, {"name": "low"}, priority=-5)
    high = await enqueue_one(database, ECHO, {"name": "high"}, priority=50)
    middle = await enqueue_one(database, ECHO, {"name": "middle"})
    elsewhere = await enqueue_one(database, ECHO, {"name": "elsewhere"}, queue="reports")
    start_worker(kinds_of((ECHO, recorder)), concurrency=1, queues=["default"])
    await wait_for(status_is(database, low, "succeeded"))
    assert [args["name"] for _, _, args in recorder.runs] == ["high", "middle", "low"]
    await asyncio.sleep(0.3)
    assert (await job_row(database, elsewhere)).status == "queued"
    start_worker(kinds_of((ECHO, recorder)), queues=["reports"])
    await wait_for(status_is(database, elsewhere, "succeeded"))
    assert {high, middle} <= set(recorder.ids())


async def test_bad_enqueue_options_are_refused(database: Database) -> None:
    async with database.sessionmaker() as session:
        with pytest.raises(ValueError, match="queue"):
            await enqueue(session, ECHO, queue="Not A Queue")
        with pytest.raises(ValueError, match="priority"):
            await enqueue(session, ECHO, priority=1000)
        with pytest.raises(ValueError, match="max_attempts"):
            await enqueue(session, ECHO, max_attempts=0)
        with pytest.raises(ValueError, match="idempotency key"):
            await enqueue(session, ECHO, idempotency_key="k" * 256)
    with pytest.raises(ValueError, match="dotted"):
        JobKind("NoDots")


async def test_progress_is_recorded_while_the_job_runs(
    database: Database, start_worker: WorkerFactory
) -> None:
    release = asyncio.Event()

    async def halfway(job: JobRun) -> None:
        await job.progress(0.5)
        await release.wait()

    start_worker(kinds_of((ECHO, halfway)))
    job_id = await enqueue_one(database, ECHO)

    async def half_done() -> bool:
        job = await job_row(database, job_id)
        return job.status == "running" and job.progress == 0.5

    await wait_for(half_done)
    release.set()
    assert (await wait_for(status_is(database, job_id, "succeeded"))).progress == 1.0


async def test_a_job_whose_worker_died_is_taken_again_once_its_lease_expires(
    database: Database, start_worker: WorkerFactory
) -> None:
    job_id = await enqueue_one(database, ECHO)
    # A worker takes it, then dies: its lease runs out with nobody renewing it.
    now = utcnow()
    async with database.sessionmaker() as session:
        [claimed] = await repository.claim(
            session,
            worker="dead-worker",
            queues=None,
            limit=1,
            now=now,
            lease_until=now + timedelta(seconds=1),
        )
        await session.commit()
    assert claimed.id == job_id
    assert claimed.attempt == 1
    recorder = Recorder()
    start_worker(kinds_of((ECHO, recorder)), lease_seconds=3.0, poll_seconds=0.1)
    await asyncio.sleep(0.3)
    assert recorder.runs == []  # the lease still holds
    job = await wait_for(status_is(database, job_id, "succeeded"), within=10)
    assert recorder.runs == [(job_id, 2, {})]
    assert job.attempts == 2


async def test_a_job_out_of_attempts_when_its_lease_expires_fails(
    database: Database, start_worker: WorkerFactory
) -> None:
    once = JobKind("test.once", max_attempts=1)
    job_id = await enqueue_one(database, once)
    now = utcnow()
    async with database.sessionmaker() as session:
        await repository.claim(
            session, worker="dead", queues=None, limit=1, now=now, lease_until=now
        )
        await session.commit()
    recorder = Recorder()
    start_worker(kinds_of((once, recorder)), lease_seconds=3.0)
    job = await wait_for(status_is(database, job_id, "failed"))
    assert recorder.runs == []
    assert job.error is not None
    assert "lease" in job.error


async def test_stop_lets_short_jobs_finish_and_puts_the_others_back(
    database: Database, start_worker: WorkerFactory
) -> None:
    quick_done = asyncio.Event()

    async def quick(job: JobRun) -> None:
        await asyncio.sleep(0.2)
        quick_done.set()

    async def endless(job: JobRun) -> None:
        await asyncio.sleep(60)

    quick_kind = JobKind("test.quick")
    endless_kind = JobKind("test.endless")
    worker = start_worker(kinds_of((quick_kind, quick), (endless_kind, endless)))
    quick_id = await enqueue_one(database, quick_kind)
    endless_id = await enqueue_one(database, endless_kind)
    await wait_for(status_is(database, endless_id, "running"))
    await wait_for(status_is(database, quick_id, "running"))
    await worker.stop(grace_seconds=1.0)
    assert quick_done.is_set()
    assert (await job_row(database, quick_id)).status == "succeeded"
    released = await job_row(database, endless_id)
    assert released.status == "queued"
    assert released.attempts == 0
    assert released.worker is None
    assert released.lease_expires_at is None


async def test_a_worker_that_lost_a_job_does_not_overwrite_its_new_state(
    database: Database, start_worker: WorkerFactory
) -> None:
    release = asyncio.Event()

    async def waits(job: JobRun) -> None:
        await release.wait()

    start_worker(kinds_of((ECHO, waits)), lease_seconds=3.0)
    job_id = await enqueue_one(database, ECHO)
    await wait_for(status_is(database, job_id, "running"))
    # Someone else holds it now (its lease expired and another worker took it).
    async with database.sessionmaker() as session:
        await session.execute(update(Job).where(Job.id == job_id).values(worker="another"))
        await session.commit()
    release.set()
    await asyncio.sleep(0.5)
    job = await job_row(database, job_id)
    assert job.status == "running"
    assert job.worker == "another"


async def test_enqueue_many_adds_every_job_in_the_transaction(
    database: Database, start_worker: WorkerFactory
) -> None:
    recorder = Recorder()
    async with database.sessionmaker() as session:
        await enqueue_many(session, ECHO, [{"n": n} for n in range(5)])
        await session.rollback()  # none of these exist
    async with database.sessionmaker() as session:
        ids = await enqueue_many(session, ECHO, [{"n": n} for n in range(120)], priority=3)
        assert await enqueue_many(session, ECHO, []) == []
        await session.commit()
    assert len(set(ids)) == 120
    start_worker(kinds_of((ECHO, recorder)), concurrency=8)
    for job_id in ids:
        await wait_for(status_is(database, job_id, "succeeded"))
    assert sorted(args["n"] for _, _, args in recorder.runs) == list(range(120))
    jobs = await jobs_of(database, ECHO.name)
    assert len(jobs) == 120
    assert {job.priority for job in jobs} == {3}
    async with database.sessionmaker() as session:
        with pytest.raises(ValueError, match="at most"):
            await enqueue_many(session, ECHO, [{}] * (MAX_ENQUEUE_MANY + 1))
        with pytest.raises(ValueError, match="queue"):
            await enqueue_many(session, ECHO, [{}], queue="Bad Queue")


async def test_ends_written_together_keep_each_jobs_own_outcome(
    database: Database, start_worker: WorkerFactory
) -> None:
    """Attempts that end at once share one transaction; each still gets its own end, and a job
    the worker lost in the meantime is left as its new holder has it."""
    release = asyncio.Event()

    async def ends_on_release(job: JobRun) -> None:
        await release.wait()
        if job.args["n"] % 3 == 0:
            raise RuntimeError(f"job {job.args['n']} broke")

    async with database.sessionmaker() as session:
        ids = await enqueue_many(session, ECHO, [{"n": n} for n in range(12)], max_attempts=1)
        await session.commit()
    start_worker(kinds_of((ECHO, ends_on_release)), concurrency=12)
    for job_id in ids:
        await wait_for(status_is(database, job_id, "running"))
    lost = ids[1]
    async with database.sessionmaker() as session:
        await session.execute(update(Job).where(Job.id == lost).values(worker="another"))
        await session.commit()
    release.set()
    for n, job_id in enumerate(ids):
        if job_id == lost:
            continue
        job = await wait_for(status_is(database, job_id, "succeeded", "failed"))
        assert job.status == ("failed" if n % 3 == 0 else "succeeded"), n
        assert job.error == (f"RuntimeError: job {n} broke" if n % 3 == 0 else None)
    taken = await job_row(database, lost)
    assert (taken.status, taken.worker) == ("running", "another")


async def test_a_commit_in_this_process_wakes_its_worker_at_once(
    database: Database, start_worker: WorkerFactory
) -> None:
    recorder = Recorder()
    start_worker(kinds_of((ECHO, recorder)), poll_seconds=30)
    await asyncio.sleep(0.3)  # its first look found nothing: it waits for its next poll, or a wake
    started = time.monotonic()
    job_id = await enqueue_one(database, ECHO)
    await wait_for(status_is(database, job_id, "succeeded"), within=10)
    # Well before the poll: the commit woke it (this process's wake-up on SQLite, and on
    # PostgreSQL the NOTIFY as well).
    assert time.monotonic() - started < 10
