"""The relay: numbers committed events and delivers them, a batch at a time, at least once.

Each batch is one transaction under the relay lock (`repository.lock_relay`): the committed
events not numbered yet, oldest first, get the next positions, are handed to the delivery
(`Delivery.deliver`, before the commit: a delivery that fails rolls the batch back, and it is
tried again after a pause), and are marked delivered. An event is thus delivered once or, if
the process dies between delivery and commit, again: consumers are idempotent
(`handled_events`). After a batch commits, this process's live feeds of the users it holds
events of are woken (`feed_wakeups`); feeds in other processes find it at their next poll.

A relay runs beside each worker (`parley worker`, and `parley serve` with
`WORKER_IN_PROCESS`); any number may run, the lock lets one number at a time. It wakes when a
session of its process adds events (`outbox.relay_wakeups`) and polls every `poll_seconds` for
events of other processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
import weakref
from collections.abc import Iterable, Sequence
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from parley.core.db import Database, utcnow
from parley.events import repository
from parley.events.models import OutboxEvent
from parley.events.outbox import relay_wakeups

logger = logging.getLogger(__name__)
BATCH = 500
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0)


class UserWakeups:
    """Wakes this process's live feeds of some users (from any thread): a feed subscribes for
    its user, and a relay batch wakes the feeds of the users it holds events of, not every feed.

    Each feed's `asyncio.Event` is held weakly: the subscription lasts as long as the feed.
    """

    def __init__(self) -> None:
        self._feeds: weakref.WeakKeyDictionary[
            asyncio.Event, tuple[asyncio.AbstractEventLoop, uuid.UUID]
        ] = weakref.WeakKeyDictionary()

    def subscribe(self, user_id: uuid.UUID) -> asyncio.Event:
        """An event set when events of `user_id` are numbered here (keep a reference to it)."""
        wakeup = asyncio.Event()
        self._feeds[wakeup] = (asyncio.get_running_loop(), user_id)
        return wakeup

    @property
    def subscribers(self) -> int:
        """How many feeds are subscribed."""
        return len(self._feeds)

    def notify(self, user_ids: Iterable[uuid.UUID | None]) -> None:
        """Wake the feeds of `user_ids`."""
        wanted = set(user_ids)
        for wakeup, (loop, user_id) in list(self._feeds.items()):
            if user_id in wanted and not loop.is_closed():
                loop.call_soon_threadsafe(wakeup.set)


feed_wakeups = UserWakeups()


class Delivery(Protocol):
    """Where numbered events go: a broker, or this database's consumer jobs."""

    async def deliver(self, session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
        """Deliver the events, in order, before `session` (the batch's transaction, which
        the relay commits) commits; raise to have the batch tried again."""
        ...


class OutboxOnly:
    """Nowhere beyond the outbox, where the feed reads the events (no consumers)."""

    async def deliver(self, session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
        return None


class Relay:
    """Numbers and delivers committed events (see the module docstring).

    Args:
        database: the app's database.
        delivery: where events go.
        batch: the most events per transaction.
        poll_seconds: how often to look for events of other processes.
    """

    def __init__(
        self,
        database: Database,
        delivery: Delivery | None = None,
        *,
        batch: int = BATCH,
        poll_seconds: float = 1.0,
    ) -> None:
        self.database = database
        self.delivery = delivery or OutboxOnly()
        self.batch = batch
        self.poll_seconds = poll_seconds

    async def relay_batch(self) -> int:
        """Number and deliver one batch; how many events it held.

        Raises:
            Exception: the delivery failed (the batch is left for the next try, with its
                `attempts` counted and its `last_error`).
        """
        async with self.database.sessionmaker() as session:
            await repository.lock_relay(session)
            events = await repository.pending(session, self.batch)
            if not events:
                return 0
            ids = [event.id for event in events]
            first = await repository.last_position(session) + 1
            now = utcnow()
            for index, event in enumerate(events):
                event.position = first + index
                event.published_at = now
            try:
                await self.delivery.deliver(session, events)
            except Exception as exc:
                await session.rollback()
                await repository.record_failure(session, ids, f"{type(exc).__name__}: {exc}")
                await session.commit()
                raise
            await session.commit()
        feed_wakeups.notify(event.user_id for event in events)
        return len(events)

    async def drain(self) -> int:
        """Relay batches until none is left; how many events in all."""
        total = 0
        while (count := await self.relay_batch()) > 0:
            total += count
            if count < self.batch:
                break
        return total

    async def run(self) -> None:
        """Relay until cancelled: at each wake-up and poll, after a failure with a backoff."""
        wake = relay_wakeups.subscribe()
        failures = 0
        while True:
            wake.clear()
            try:
                await self.drain()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception:
                pause = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                failures += 1
                logger.exception("relaying events failed; trying again in %s s", pause)
                await asyncio.sleep(pause)
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await wake.wait()
