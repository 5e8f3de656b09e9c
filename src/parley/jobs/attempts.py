"""One attempt at a job, as a worker holds it (`Run`) and as its handler sees it (`JobView`), and
what an attempt's end is made of: the backoff before the next attempt and the stored error."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from parley.jobs.kinds import JobKind
from parley.jobs.repository import ClaimedJob


def backoff(kind: JobKind, attempt: int) -> float:
    """Seconds before the attempt after `attempt` (1 for the first): the kind's backoff doubled
    per attempt, capped, with full jitter over its upper half (so retries of jobs that failed
    together spread out)."""
    ceiling = min(kind.max_backoff_seconds, kind.backoff_seconds * 2 ** (attempt - 1))
    return float(ceiling / 2 + random.random() * ceiling / 2)  # noqa: S311 - jitter, not a secret


def describe(exc: BaseException) -> str:
    """An attempt's error as stored: the exception's type and message."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@dataclass(slots=True)
class Run:
    """One job running here: what it is, its task, and why it was stopped (if it was)."""

    job: ClaimedJob
    kind: JobKind | None
    task: asyncio.Task[None] | None = None
    stopped: str | None = None  # "shutdown", "cancelled" or "lost"
    ending: bool = False  # the attempt is over: its end is being written
    progress_value: float | None = None
    progress_written_at: float = 0.0
    started: float = field(default_factory=time.monotonic)


class JobView:
    """What a handler sees of its job (`parley.jobs.kinds.JobRun`)."""

    __slots__ = ("_report", "_run")

    def __init__(self, run: Run, report: Callable[[Run, float], Awaitable[None]]) -> None:
        self._run = run
        self._report = report

    @property
    def id(self) -> uuid.UUID:
        return self._run.job.id

    @property
    def kind(self) -> str:
        return self._run.job.kind

    @property
    def args(self) -> Mapping[str, Any]:
        return self._run.job.args

    @property
    def attempt(self) -> int:
        return self._run.job.attempt

    @property
    def max_attempts(self) -> int:
        return self._run.job.max_attempts

    async def progress(self, fraction: float) -> None:
        await self._report(self._run, fraction)
