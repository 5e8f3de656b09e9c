"""Consumers: the effects built on the events (recurring tasks, the audit log, ...), each
idempotent.

A consumer names the event types it handles and an effect, `handle(session, event)`, which
writes through `session` and does not commit. `consume` runs the effect in one transaction
with the `handled_events` row of (consumer, event id): a redelivered event finds its row and
has no second effect, and an effect that fails leaves no row, so the event is tried again.

Where the events come from depends on `EVENTS_BROKER`. With `none`, the relay queues one
`events.consume` job per (consumer, event) in the transaction that numbers the event
(`JobDelivery`), so the job queue's retries, backoff and dead letters apply. With a broker,
each consumer subscribes to it in its own consumer group (`parley.events.brokers`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.core.db import Database, insert_of, utcnow
from parley.events.models import CONSUMER_MAX_CHARS, HandledEvent, OutboxEvent
from parley.events.schemas import CloudEvent, cloud_event
from parley.jobs.kinds import JobKind, JobRun
from parley.jobs.queue import enqueue_many

logger = logging.getLogger(__name__)

ReceivedEvent = CloudEvent[dict[str, Any]]
Effect = Callable[[AsyncSession, ReceivedEvent], Awaitable[None]]
_HANDLED = HandledEvent.__table__

CONSUME_JOB = JobKind("events.consume", priority=10, max_attempts=10, timeout_seconds=120)


@dataclass(frozen=True, slots=True)
class Consumer:
    """An effect of some event types.

    Attributes:
        name: stable and unique (it keys `handled_events`, and names the consumer group).
        types: the event types it handles.
        handle: the effect; writes through the session, never commits.
    """

    name: str
    types: frozenset[str]
    handle: Effect

    def __post_init__(self) -> None:
        if not 0 < len(self.name) <= CONSUMER_MAX_CHARS:
            raise ValueError(f"a consumer name has 1..{CONSUMER_MAX_CHARS} characters")

    def wants(self, event_type: str) -> bool:
        """Whether it handles events of this type."""
        return event_type in self.types


class Consumers:
    """The consumers of a process, by name."""

    def __init__(self, consumers: Iterable[Consumer] = ()) -> None:
        self._by_name: dict[str, Consumer] = {}
        for consumer in consumers:
            self.add(consumer)

    def add(self, consumer: Consumer) -> None:
        """Register `consumer`.

        Raises:
            ValueError: a consumer of that name is registered already.
        """
        if consumer.name in self._by_name:
            raise ValueError(f"consumer {consumer.name!r} is registered already")
        self._by_name[consumer.name] = consumer

    def get(self, name: str) -> Consumer | None:
        """The consumer of this name."""
        return self._by_name.get(name)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def wanting(self, event_type: str) -> list[Consumer]:
        """The consumers that handle events of this type."""
        return [consumer for consumer in self._by_name.values() if consumer.wants(event_type)]

    @property
    def types(self) -> frozenset[str]:
        """Every type some consumer handles."""
        return frozenset().union(*(consumer.types for consumer in self._by_name.values()))


def parse_event(body: Any) -> ReceivedEvent:
    """A delivered CloudEvent (structured mode: a dict, or its JSON as str or bytes).

    Raises:
        ValueError: not a CloudEvent Parley can read.
    """
    try:
        if isinstance(body, bytes | bytearray | str):
            return ReceivedEvent.model_validate_json(body)
        return ReceivedEvent.model_validate(body)
    except ValidationError as exc:
        raise ValueError(f"not a Parley CloudEvent: {exc.error_count()} errors") from exc


async def consume(database: Database, consumer: Consumer, event: ReceivedEvent) -> bool:
    """Apply `consumer`'s effect of `event` once: whether it was applied now (False: it had been
    already, or the consumer does not handle the type).

    Raises:
        Exception: the effect failed (nothing of it is kept; deliver the event again).
    """
    if not consumer.wants(event.type):
        return False
    try:
        event_id = uuid.UUID(event.id)
    except ValueError:
        logger.warning("consumer %s: dropping an event whose id is not a UUID", consumer.name)
        return False
    async with database.sessionmaker() as session:
        claimed = await session.execute(
            insert_of(session, _HANDLED)
            .values(consumer=consumer.name, event_id=event_id, created_at=utcnow())
            .on_conflict_do_nothing()
            .returning(_HANDLED.c.event_id)
        )
        if claimed.scalar_one_or_none() is None:
            return False
        await consumer.handle(session, event)
        await session.commit()
    return True


class JobDelivery:
    """`EVENTS_BROKER=none`: in the relay's transaction, one `events.consume` job per event and
    consumer that handles its type (the event rides in the job's arguments)."""

    def __init__(self, consumers: Consumers) -> None:
        self.consumers = consumers

    async def deliver(self, session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
        by_consumer: dict[str, list[dict[str, Any]]] = {}
        for event in events:
            for consumer in self.consumers.wanting(event.type):
                by_consumer.setdefault(consumer.name, []).append(
                    {"consumer": consumer.name, "event": cloud_event(event)}
                )
        for many_args in by_consumer.values():
            for start in range(0, len(many_args), 1000):
                await enqueue_many(session, CONSUME_JOB, many_args[start : start + 1000])


def consume_job(database: Database, consumers: Consumers) -> Callable[[JobRun], Awaitable[None]]:
    """The handler of `events.consume` jobs."""

    async def run(job: JobRun) -> None:
        consumer = consumers.get(str(job.args.get("consumer")))
        if consumer is None:
            logger.warning("events.consume: no consumer %r here; dropped", job.args.get("consumer"))
            return
        await consume(database, consumer, parse_event(job.args.get("event")))

    return run
