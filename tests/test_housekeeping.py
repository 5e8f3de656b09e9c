"""The housekeeping schedule (`parley.housekeeping`): each job runs every interval, a failing job
is logged and neither stops itself nor the others, and `stop` ends every job at once, one in the
middle of a run included."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from parley.housekeeping import Housekeeping

INTERVAL = 0.02


class Counter:
    """A job that counts its runs and when they started."""

    def __init__(self) -> None:
        self.starts: list[float] = []
        self._ran = asyncio.Event()

    async def __call__(self) -> None:
        self.starts.append(time.monotonic())
        self._ran.set()

    async def until(self, runs: int) -> None:
        """Wait until the job ran `runs` times (a second at the most)."""
        async with asyncio.timeout(1.0):
            while len(self.starts) < runs:
                self._ran.clear()
                await self._ran.wait()


async def test_jobs_run_every_interval_from_one_interval_after_the_start() -> None:
    housekeeping = Housekeeping()
    fast, slow = Counter(), Counter()
    housekeeping.every(INTERVAL, "fast", fast)
    housekeeping.every(3 * INTERVAL, "slow", slow)
    started = time.monotonic()
    housekeeping.start()
    try:
        await slow.until(2)
        await fast.until(6)
    finally:
        await housekeeping.stop()
    assert fast.starts[0] - started >= INTERVAL * 0.9
    assert slow.starts[0] - started >= 3 * INTERVAL * 0.9
    gaps = [later - earlier for earlier, later in zip(fast.starts, fast.starts[1:], strict=False)]
    assert min(gaps) >= INTERVAL * 0.9  # the event loop's clock may round a little
    assert [job.name for job in housekeeping.jobs] == ["fast", "slow"]


async def test_a_failing_job_is_logged_and_runs_again_and_the_others_go_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    housekeeping = Housekeeping()
    healthy = Counter()
    failures = 0

    async def failing() -> None:
        nonlocal failures
        failures += 1
        raise RuntimeError("the database is down")

    housekeeping.every(INTERVAL, "failing", failing)
    housekeeping.every(INTERVAL, "healthy", healthy)
    with caplog.at_level(logging.WARNING, logger="parley.housekeeping"):
        housekeeping.start()
        try:
            await healthy.until(4)
        finally:
            await housekeeping.stop()
    assert failures >= 2  # it failed, and ran again at its next time
    failed = [r for r in caplog.records if "'failing' failed" in r.getMessage()]
    assert len(failed) == failures
    assert all(r.exc_info and isinstance(r.exc_info[1], RuntimeError) for r in failed)


async def test_stop_ends_every_job_promptly_even_mid_run() -> None:
    housekeeping = Housekeeping()
    ticking = Counter()
    running = asyncio.Event()
    cancelled = asyncio.Event()

    async def long_job() -> None:
        running.set()
        try:
            await asyncio.sleep(60)
        finally:
            cancelled.set()

    housekeeping.every(INTERVAL, "long", long_job)
    housekeeping.every(INTERVAL, "ticking", ticking)
    housekeeping.start()
    tasks = {t for t in asyncio.all_tasks() if t.get_name() in ("long", "ticking")}
    assert len(tasks) == 2  # each job has a task of its own, named after it
    async with asyncio.timeout(0.5):
        await running.wait()
    began = time.monotonic()
    await housekeeping.stop()
    assert time.monotonic() - began < 0.25
    assert cancelled.is_set()
    assert all(task.done() for task in tasks)
    runs = len(ticking.starts)
    await asyncio.sleep(3 * INTERVAL)
    assert len(ticking.starts) == runs  # nothing runs after the stop


async def test_a_job_registered_after_the_start_runs_too() -> None:
    housekeeping = Housekeeping()
    housekeeping.start()
    late = Counter()
    housekeeping.every(INTERVAL, "late", late)
    try:
        await late.until(2)
    finally:
        await housekeeping.stop()


def test_a_job_needs_a_positive_interval_and_a_name_of_its_own() -> None:
    housekeeping = Housekeeping()
    housekeeping.every(1.0, "trim", Counter())
    with pytest.raises(ValueError, match="registered already"):
        housekeeping.every(1.0, "trim", Counter())
    with pytest.raises(ValueError, match="positive"):
        housekeeping.every(0, "other", Counter())
