"""Periodic schedules: each names a job kind and when it fires, every so many seconds or on a
cron expression (five fields, UTC, parsed by cronsim). Time is cut into slots (the interval's
multiples since the epoch, or the cron expression's times); each slot's job is enqueued once,
however many workers run: the worker that moves the schedule's row on to the new slot enqueues
the job in the same transaction (`parley.jobs.repository.take_slot`), and the job's idempotency
key names the slot as well. A slot that began while no worker ran fires when one starts; earlier
ones are not made up.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cronsim import CronSim, CronSimError
from sqlalchemy.exc import SQLAlchemyError

from parley.core.db import Database, utcnow
from parley.jobs import repository
from parley.jobs.kinds import JobKind
from parley.jobs.queue import enqueue

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Schedule:
    """`kind` with `args`, fired once per slot: every `every_seconds`, or at `cron`'s times.

    Raises:
        ValueError: neither or both of `every_seconds` and `cron`, or an invalid expression.
    """

    name: str
    kind: JobKind
    every_seconds: float | None = None
    cron: str | None = None
    args: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if (self.every_seconds is None) == (self.cron is None):
            raise ValueError(f"schedule {self.name!r}: give either every_seconds or cron")
        if self.every_seconds is not None and not self.every_seconds >= 1:
            raise ValueError(f"schedule {self.name!r}: the interval is at least a second")
        if self.cron is not None:
            try:
                CronSim(self.cron, datetime.now(UTC))
            except CronSimError as exc:
                raise ValueError(f"schedule {self.name!r}: {exc}") from exc

    def slot_at(self, now: datetime) -> datetime:
        """The start of the slot `now` is in."""
        if self.every_seconds is not None:
            start = math.floor(now.timestamp() / self.every_seconds) * self.every_seconds
            return datetime.fromtimestamp(start, UTC)
        assert self.cron is not None  # noqa: S101 - one of the two, checked above
        # cronsim's iteration excludes its start: a second later includes `now` itself.
        return next(
            CronSim(self.cron, now.replace(microsecond=0) + timedelta(seconds=1), reverse=True)
        )

    def next_slot_at(self, now: datetime) -> datetime:
        """The start of the slot after the one `now` is in."""
        if self.every_seconds is not None:
            return self.slot_at(now) + timedelta(seconds=self.every_seconds)
        assert self.cron is not None  # noqa: S101
        return next(CronSim(self.cron, now.replace(microsecond=0)))

    def idempotency_key(self, slot_at: datetime) -> str:
        """The idempotency key of the job of the slot starting at `slot_at`."""
        return f"schedule:{self.name}:{slot_at.isoformat()}"


async def fire_schedules(database: Database, schedules: Sequence[Schedule]) -> None:
    """Enqueue each schedule's job once per slot, until cancelled (every worker runs this: the
    slot's row decides which one enqueues)."""
    fired: dict[str, datetime] = {}
    while True:
        now = utcnow()
        for schedule in schedules:
            slot = schedule.slot_at(now)
            if fired.get(schedule.name) == slot:
                continue
            try:
                await fire(database, schedule, slot)
                fired[schedule.name] = slot
            except (SQLAlchemyError, OSError):
                logger.warning("cannot fire the schedule %s", schedule.name, exc_info=True)
        following = min(schedule.next_slot_at(now) for schedule in schedules)
        wait = (following - utcnow()).total_seconds()
        await asyncio.sleep(min(60.0, max(0.05, wait + 0.005)))


async def fire(database: Database, schedule: Schedule, slot: datetime) -> bool:
    """Enqueue the slot's job if no other worker did; whether this call did."""
    async with database.sessionmaker() as session:
        if not await repository.take_slot(session, schedule.name, slot, utcnow()):
            return False
        await enqueue(
            session,
            schedule.kind,
            schedule.args,
            run_at=slot,
            idempotency_key=schedule.idempotency_key(slot),
        )
        await session.commit()
    return True
