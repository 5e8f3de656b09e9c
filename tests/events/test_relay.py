"""The relay: events committed from many sessions at once are numbered without a gap or a
repeat by relays running at the same time; a delivery that fails rolls its batch back, counts
the attempt with its reason, and the batch goes out on the next try; an event is numbered only
once its transaction has committed."""

from __future__ import annotations

import asyncio
import gc
import time
import uuid
from collections.abc import Sequence
from datetime import timedelta

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.core.db import utcnow
from parley.events import repository
from parley.events.models import OutboxEvent
from parley.events.outbox import add_event
from parley.events.relay import Relay, UserWakeups
from parley.events.service import EventFeed
from tests.fixtures.accounts import TestUser


@pytest.fixture
def user(quiet_user: TestUser) -> TestUser:
    """These tests count every row of the outbox: a user without their sign-up event."""
    return quiet_user


async def add_events(app: FastAPI, user_id: uuid.UUID, count: int, label: str) -> None:
    async with app.state.database.sessionmaker() as session:
        for index in range(count):
            await add_event(
                session,
                "parley.test.happened.v1",
                subject=f"tests/{label}",
                user_id=user_id,
                data={"label": label, "index": index},
            )
        await session.commit()


async def numbered(app: FastAPI) -> list[OutboxEvent]:
    async with app.state.database.sessionmaker() as session:
        rows = await session.execute(select(OutboxEvent).order_by(OutboxEvent.position))
        return list(rows.scalars().all())


async def test_relays_at_once_number_every_event_once_in_order(
    app: FastAPI, user: TestUser
) -> None:
    user_id = uuid.UUID(user.id)
    relays = [Relay(app.state.database, batch=7) for _ in range(3)]

    async def write(label: str) -> None:
        for _ in range(5):
            await add_events(app, user_id, 4, label)
            await asyncio.sleep(0)

    async def relay_until_done(relay: Relay, done: asyncio.Event) -> None:
        while not done.is_set():
            await relay.drain()
            await asyncio.sleep(0.001)
        await relay.drain()

    done = asyncio.Event()
    relaying = [asyncio.ensure_future(relay_until_done(relay, done)) for relay in relays]
    await asyncio.gather(*(write(f"writer-{n}") for n in range(4)))
    done.set()
    await asyncio.gather(*relaying)

    rows = await numbered(app)
    assert len(rows) == 80
    assert [row.position for row in rows] == list(range(1, 81))
    assert all(row.published_at is not None for row in rows)
    # Each subject's events keep their order: its commits of 0..3, one after another.
    for label in {row.subject for row in rows}:
        indexes = [row.data["index"] for row in rows if row.subject == label]
        assert indexes == [0, 1, 2, 3] * 5, (label, indexes)


class FlakyDelivery:
    """Fails its first `failures` deliveries, then records what it was given."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.delivered: list[list[int]] = []

    async def deliver(self, session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the broker is away")
        self.delivered.append([event.data["index"] for event in events])


async def test_a_failed_delivery_is_retried_and_recorded(app: FastAPI, user: TestUser) -> None:
    await add_events(app, uuid.UUID(user.id), 3, "flaky")
    delivery = FlakyDelivery(failures=2)
    relay = Relay(app.state.database, delivery)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await relay.relay_batch()
    rows = await numbered(app)
    assert [row.position for row in rows] == [None, None, None]
    assert {row.attempts for row in rows} == {2}
    assert {row.last_error for row in rows} == {"ConnectionError: the broker is away"}
    assert await relay.relay_batch() == 3
    assert delivery.delivered == [[0, 1, 2]]
    assert [row.position for row in await numbered(app)] == [1, 2, 3]


async def test_an_uncommitted_event_is_not_numbered(app: FastAPI, user: TestUser) -> None:
    relay = Relay(app.state.database)
    async with app.state.database.sessionmaker() as session:
        await add_event(
            session,
            "parley.test.happened.v1",
            subject="tests/open",
            user_id=uuid.UUID(user.id),
            data={"index": 0},
        )
        await session.flush()
        if app.state.database.engine.dialect.name == "postgresql":
            # SQLite has one writer: the relay would wait for this transaction to end.
            assert await relay.relay_batch() == 0
        await session.rollback()
    assert await relay.drain() == 0
    assert await numbered(app) == []


async def test_event_types_and_subjects_are_checked(app: FastAPI) -> None:
    async with app.state.database.sessionmaker() as session:
        with pytest.raises(ValueError, match="not an event type"):
            await add_event(session, "task.created", subject="x", user_id=None, data={})
        with pytest.raises(ValueError, match="subject"):
            await add_event(session, "parley.task.created.v1", subject="", user_id=None, data={})


async def test_a_commit_wakes_the_relay_and_the_feed_at_once(app: FastAPI, user: TestUser) -> None:
    user_id = uuid.UUID(user.id)
    relay = Relay(app.state.database, poll_seconds=30)
    feed = EventFeed(app.state.database, poll_seconds=30)
    relaying = asyncio.ensure_future(relay.run())
    events = feed.follow(user_id, await feed.start(user_id, None))
    first = asyncio.ensure_future(anext(events))
    try:
        await asyncio.sleep(0.3)  # both looked, found nothing, and wait for a poll or a wake
        started = time.monotonic()
        await add_events(app, user_id, 1, "wake")
        event = await asyncio.wait_for(first, timeout=10)
        assert event is not None
        assert event.subject == "tests/wake"
        assert time.monotonic() - started < 10  # not the 30 s poll
    finally:
        first.cancel()
        relaying.cancel()
        await asyncio.gather(first, relaying, return_exceptions=True)
        await events.aclose()


async def test_delivered_events_past_their_retention_are_purged(
    app: FastAPI, user: TestUser
) -> None:
    await add_events(app, uuid.UUID(user.id), 3, "old")
    await Relay(app.state.database).drain()
    await add_events(app, uuid.UUID(user.id), 2, "pending")  # not delivered: kept
    async with app.state.database.sessionmaker() as session:
        assert await repository.purge_delivered(session, utcnow() - timedelta(days=1)) == 0
        assert await repository.purge_delivered(session, utcnow() + timedelta(seconds=1)) == 3
        await session.commit()
    assert [row.subject for row in await numbered(app)] == ["tests/pending"] * 2


async def test_a_batch_wakes_the_feeds_of_its_users_only() -> None:
    wakeups = UserWakeups()
    alice, bob = uuid.uuid4(), uuid.uuid4()
    alices, bobs = wakeups.subscribe(alice), wakeups.subscribe(bob)
    wakeups.notify([alice, None])
    await asyncio.sleep(0)
    assert alices.is_set()
    assert not bobs.is_set()
    assert wakeups.subscribers == 2
    del bobs  # a feed that ended is no longer kept
    gc.collect()
    assert wakeups.subscribers == 1
