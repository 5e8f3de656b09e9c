"""One schedule for the app's periodic work: releasing budget holds whose request never settled,
giving freed memory back to the operating system, and whatever else registers a job.

A `Housekeeping` holds named jobs, each an async callable run every so many seconds (the first
run one interval after the start, each next one an interval after the previous one ended). The
app's lifespan starts it and stops it at shutdown. A job that fails is logged and runs again at
its next time; it never stops the schedule or the other jobs.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

JobFunction = Callable[[], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class Job:
    """A periodic job: its name (its task's name too), its interval in seconds, what it runs."""

    name: str
    interval: float
    run: JobFunction


class Housekeeping:
    """Named periodic jobs, each run in a task of its own between `start` and `stop`."""

    def __init__(self) -> None:
        self._jobs: list[Job] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._started = False

    @property
    def jobs(self) -> tuple[Job, ...]:
        """The jobs registered so far, in order."""
        return tuple(self._jobs)

    def every(self, seconds: float, name: str, job: JobFunction) -> None:
        """Run `job` every `seconds` (a job registered after `start` starts at once).

        Args:
            seconds: the time between the end of one run and the start of the next (> 0).
            name: what the logs call it, and its task's name.
            job: an async callable of no arguments; what it returns is ignored.

        Raises:
            ValueError: `seconds` is not positive, or a job of this name is registered.
        """
        if not seconds > 0:
            raise ValueError(f"housekeeping job {name!r}: the interval must be positive")
        if any(existing.name == name for existing in self._jobs):
            raise ValueError(f"housekeeping job {name!r} is registered already")
        registered = Job(name, seconds, job)
        self._jobs.append(registered)
        if self._started:
            self._spawn(registered)

    def start(self) -> None:
        """Start every job's schedule (a second call does nothing)."""
        if self._started:
            return
        self._started = True
        for job in self._jobs:
            self._spawn(job)

    async def stop(self) -> None:
        """Cancel every job, and wait until each has ended: a job cancelled mid-query releases
        its connection before the database is disposed."""
        self._started = False
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _spawn(self, job: Job) -> None:
        # A context of its own: a job started from a request would otherwise carry its request
        # id and span into every later run.
        task = asyncio.get_running_loop().create_task(
            _run_every(job), name=job.name, context=contextvars.Context()
        )
        self._tasks.append(task)


async def _run_every(job: Job) -> None:
    while True:
        await asyncio.sleep(job.interval)
        try:
            await job.run()
        except Exception:
            logger.warning("the housekeeping job %r failed", job.name, exc_info=True)
