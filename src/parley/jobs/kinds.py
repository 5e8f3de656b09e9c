"""What a job kind is: its dotted name and its defaults (queue, priority, attempts, timeout,
backoff), declared once by the domain that owns the work, and the handler a worker runs for it.

A domain declares `JobKind("chat.title", ...)` next to its use cases and enqueues with it
(`parley.jobs.queue.enqueue`); whoever builds the worker binds each kind to its handler in a
`JobKinds` registry (`parley.background`). A handler is `async def handler(job: JobRun) -> None`:
it reads `job.args`, may report `job.progress(...)`, and raises to fail the attempt.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# Dotted lower-case names that say what the job does: `chat.title`, `file.ingest`.
KIND_NAME = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+$")
QUEUE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,49}$")
DEFAULT_QUEUE = "default"
MAX_PRIORITY = 100  # priorities run from -100 to 100; higher runs first


@dataclass(frozen=True, slots=True)
class JobKind:
    """A kind of job and its defaults.

    Attributes:
        name: the dotted name stored with each job.
        queue: the queue its jobs go to unless the enqueue names another.
        priority: -100..100; of the due jobs of a queue, higher runs first.
        max_attempts: how many times a job is tried before it stays `failed`.
        timeout_seconds: an attempt running longer fails (and is retried) with a timeout.
        backoff_seconds: the wait before the second attempt; it doubles with each attempt
            (up to `max_backoff_seconds`), with jitter.
    """

    name: str
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    max_attempts: int = 5
    timeout_seconds: float = 300.0
    backoff_seconds: float = 5.0
    max_backoff_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if not KIND_NAME.match(self.name) or len(self.name) > 100:
            raise ValueError(f"job kind {self.name!r}: use a dotted lower-case name")
        check_queue(self.queue)
        check_priority(self.priority)
        if not 1 <= self.max_attempts <= 100:
            raise ValueError(f"job kind {self.name!r}: max_attempts must be 1..100")
        if not self.timeout_seconds > 0 or not self.backoff_seconds >= 0:
            raise ValueError(f"job kind {self.name!r}: timeouts and backoffs must be positive")


def check_queue(queue: str) -> str:
    """`queue` if it is a valid queue name (lower-case letters, digits, `-` and `_`)."""
    if not QUEUE_NAME.match(queue):
        raise ValueError(f"invalid queue name {queue!r}")
    return queue


def check_priority(priority: int) -> int:
    """`priority` if it is within -100..100."""
    if not -MAX_PRIORITY <= priority <= MAX_PRIORITY:
        raise ValueError(f"priority {priority} is outside -{MAX_PRIORITY}..{MAX_PRIORITY}")
    return priority


class JobRun(Protocol):
    """What a handler sees of the job it runs."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def kind(self) -> str: ...

    @property
    def args(self) -> Mapping[str, Any]: ...

    @property
    def attempt(self) -> int:
        """1 on the first attempt."""
        ...

    @property
    def max_attempts(self) -> int:
        """The job's attempts in all: `attempt == max_attempts` is its last."""
        ...

    async def progress(self, fraction: float) -> None:
        """Record how far the job is (0..1); shown by the admin API."""
        ...


JobHandler = Callable[[JobRun], Awaitable[None]]


@dataclass(slots=True)
class JobKinds:
    """The kinds a worker runs, each bound to its handler."""

    _handlers: dict[str, tuple[JobKind, JobHandler]] = field(default_factory=dict)

    def handle(self, kind: JobKind, handler: JobHandler) -> None:
        """Run `handler` for jobs of `kind`.

        Raises:
            ValueError: the kind has a handler already.
        """
        if kind.name in self._handlers:
            raise ValueError(f"job kind {kind.name!r} has a handler already")
        self._handlers[kind.name] = (kind, handler)

    def get(self, name: str) -> tuple[JobKind, JobHandler] | None:
        """The kind of this name and its handler, if this registry has it."""
        return self._handlers.get(name)

    @property
    def names(self) -> Iterable[str]:
        """The kinds' names."""
        return self._handlers.keys()
