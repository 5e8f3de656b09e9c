"""Workers in processes of their own on the test database (SQLite or PostgreSQL): a worker killed
mid-job (SIGKILL) leaves a job that runs again and completes once; four workers share 2,000 jobs
with none run twice and none lost; three workers fire a periodic schedule once per slot; and
`parley worker` runs Parley's own schedules and stops cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import func, select

from parley.core.db import Database
from parley.jobs.models import Job
from parley.jobs.queue import enqueue
from tests.fixtures.polling import wait_for
from tests.fixtures.servers import clean_environment
from tests.jobs.helpers import enqueue_one, job_row, jobs_of, status_is
from tests.jobs.worker_process import RECORD

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def worker_processes(
    database_url: str, record: Path, count: int, *options: str
) -> Iterator[list[subprocess.Popen[bytes]]]:
    """`count` test worker processes (`tests.jobs.worker_process`), ready; killed at the end."""
    logs = [record.with_name(f"{record.stem}-worker-{index}.log") for index in range(count)]
    processes = []
    for log in logs:
        with log.open("wb") as output:  # a file, not a pipe nobody reads, which could fill
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.jobs.worker_process",
                        "--database-url",
                        database_url,
                        "--record",
                        str(record),
                        *options,
                    ],
                    cwd=ROOT,
                    env=clean_environment(),
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            )
    try:
        deadline = time.monotonic() + 60
        for process, log in zip(processes, logs, strict=True):
            while not log.read_text().startswith("ready"):
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
        yield processes
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)


def records(path: Path) -> list[tuple[uuid.UUID, int, int]]:
    """The record file's lines: (job id, attempt, pid)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        job_id, attempt, pid = line.split()
        rows.append((uuid.UUID(job_id), int(attempt), int(pid)))
    return rows


async def test_a_job_of_a_killed_worker_runs_again_and_completes_once(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    record = tmp_path / "runs.txt"
    job_id = await enqueue_one(database, RECORD, {"sleep": 1.5})
    with worker_processes(database_url, record, 1, "--lease", "3") as [first]:
        running = await wait_for(status_is(database, job_id, "running"))
        assert running.worker is not None
        assert f":{first.pid}:" in running.worker
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    assert records(record) == []  # killed before it finished
    assert (await job_row(database, job_id)).status == "running"  # as the dead worker left it
    with worker_processes(database_url, record, 1, "--lease", "3") as [second]:
        job = await wait_for(status_is(database, job_id, "succeeded"), within=20)
    assert job.attempts == 2
    assert records(record) == [(job_id, 2, second.pid)]


async def test_four_workers_share_two_thousand_jobs_none_twice_none_lost(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    record = tmp_path / "runs.txt"
    enqueued: list[uuid.UUID] = []
    with worker_processes(database_url, record, 4, "--concurrency", "4") as processes:
        for _ in range(10):
            async with database.sessionmaker() as session:
                for _ in range(200):
                    enqueued.append(await enqueue(session, RECORD))
                await session.commit()

        async def all_done() -> bool:
            async with database.sessionmaker() as session:
                done = await session.scalar(
                    select(func.count()).select_from(Job).where(Job.status == "succeeded")
                )
            return done == 2000

        await wait_for(all_done, within=240, interval=0.5)
    runs = records(record)
    assert len(runs) == 2000
    assert Counter(job_id for job_id, _, _ in runs).most_common(1)[0][1] == 1  # none twice
    assert {job_id for job_id, _, _ in runs} == set(enqueued)  # none lost
    assert {attempt for _, attempt, _ in runs} == {1}
    jobs = await jobs_of(database, RECORD.name)
    assert {job.attempts for job in jobs} == {1}
    # The work was shared: every process ran some of it.
    assert {pid for _, _, pid in runs} == {process.pid for process in processes}


async def test_three_workers_fire_a_periodic_schedule_once_per_slot(
    database: Database, database_url: str, tmp_path: Path
) -> None:
    record = tmp_path / "runs.txt"
    with worker_processes(database_url, record, 3, "--every", "1"):
        await asyncio.sleep(4.5)
    jobs = await jobs_of(database, RECORD.name)
    slots = sorted(job.run_at for job in jobs)
    assert len(slots) >= 3
    assert all(
        job.idempotency_key and job.idempotency_key.startswith("schedule:test.tick:")
        for job in jobs
    )
    # One job per one-second slot, with no slot missed and none twice.
    steps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(slots)]
    assert steps == [1.0] * len(steps)
    ran = Counter(job_id for job_id, _, _ in records(record))
    assert set(ran.values()) == {1}
    assert set(ran) <= {job.id for job in jobs}
    assert len(ran) >= len(jobs) - 1  # the last slot's job may have been enqueued at the end


def test_parley_worker_runs_parleys_schedules_and_stops_on_sigterm(
    database_url: str, tmp_path: Path
) -> None:
    env = clean_environment(
        DATABASE_URL=database_url,
        JWT_SECRET="worker-test-secret-" + "x" * 40,
        GENERATION_STALE_SECONDS="3",
        JOB_POLL_SECONDS="0.1",
        LOG_LEVEL="INFO",
    )
    log = tmp_path / "worker.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "parley", "worker", "--concurrency", "2"],
            cwd=tmp_path,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while "runs 2 jobs at once" not in log.read_text():
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            found = asyncio.run(_wait_for_sweep(database_url))
            assert found, log.read_text()
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=15) == 0, log.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert "stopped" in log.read_text()


async def _wait_for_sweep(database_url: str) -> bool:
    """Whether a `turns.sweep` job (every second with a 3 s stale time) succeeds in 15 s."""
    from parley.settings import Settings

    database = Database.from_settings(Settings(_env_file=None, database_url=database_url))
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            async with database.sessionmaker() as session:
                count = await session.scalar(
                    select(func.count())
                    .select_from(Job)
                    .where(Job.kind == "turns.sweep", Job.status == "succeeded")
                )
            if count:
                return True
            await asyncio.sleep(0.2)
        return False
    finally:
        await database.dispose()


def test_parley_worker_refuses_an_unmigrated_database_and_a_bad_queue(
    fresh_database_url: str, tmp_path: Path
) -> None:
    env = clean_environment(DATABASE_URL=fresh_database_url, JWT_SECRET="s" * 48)
    command = [sys.executable, "-m", "parley", "worker"]
    unmigrated = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert unmigrated.returncode == 1
    assert b"not migrated" in unmigrated.stderr
    bad = subprocess.run(
        [*command, "--queue", "Bad Queue"], cwd=tmp_path, env=env, capture_output=True, timeout=60
    )
    assert bad.returncode == 1
    assert b"invalid queue name" in bad.stderr
    assert os.environ.get("DATABASE_URL") != fresh_database_url
