"""Events through real brokers on loopback (`EVENTS_BROKER`, docs/events.md "Brokers"): Redis
Streams, NATS JetStream and RabbitMQ (the machine's), and tansu, a Kafka-protocol broker (not
Apache Kafka) that the tests start themselves.

Each test has a topic of its own and an app built with `EVENTS_BROKER=<url>`,
`EVENTS_TOPIC=<topic>`, whose worker companion (`events_companion`: the relay and the consumer
loops) runs beside it. They check: a task created over REST arrives with the contract's names,
body and headers, as each broker's own client reads it; a consumer subscribed through the broker
has one effect per event even when the relay publishes an event twice; a relay killed between
publishing and committing loses nothing and its re-publish has no second effect; a broker killed
and brought back (a private nats-server and a private tansu, never the shared services) loses
nothing, the events committed while it was down arriving after it returns; a change rolled back
publishes nothing; and `parley consumers` runs the consumers as a process of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.background import events_companion
from parley.events.brokers import stop_loops
from parley.events.consumers import Consumer, Consumers, ReceivedEvent
from parley.events.models import AuditRecord, HandledEvent, OutboxEvent
from parley.events.outbox import add_event
from parley.events.relay import Delivery, Relay
from parley.events.schemas import cloud_event
from parley.events.transport import open_transport
from tests.fixtures.accounts import TestUser
from tests.fixtures.apps import running_app
from tests.fixtures.brokers import (
    KINDS,
    REDIS_URL,
    BrokerProcess,
    broker_url,
    clean_up,
    nats_server,
    nats_stream,
    raw_reader,
    tansu,
    tansu_url,  # noqa: F401 - the session's tansu, a fixture
    unique_topic,
)
from tests.fixtures.polling import wait_for
from tests.fixtures.servers import clean_environment
from tests.fixtures.settings import make_settings

CONTENT_TYPE = "application/cloudevents+json"
TASK_TYPES = frozenset(
    {
        "parley.task.created.v1",
        "parley.task.updated.v1",
        "parley.task.completed.v1",
        "parley.task.deleted.v1",
    }
)
WITHIN = 60.0


@dataclass
class Target:
    """The broker of one test: its kind, URL and the test's own topic."""

    kind: str
    url: str
    topic: str
    groups: list[str] = field(default_factory=list)


@pytest.fixture
def user(quiet_user: TestUser) -> TestUser:
    """These tests read every message on a topic: a user without their sign-up event."""
    return quiet_user


@pytest.fixture(params=KINDS)
async def target(request: pytest.FixtureRequest) -> AsyncIterator[Target]:
    kind = str(request.param)
    url = broker_url(kind, request.getfixturevalue("tansu_url") if kind == "kafka" else "")
    found = Target(kind, url, unique_topic())
    yield found
    await clean_up(kind, url, found.topic, found.groups)


@dataclass
class Recorder:
    """A test consumer whose effect is a row (an audit line of its own action) and a note of
    each time the effect ran: two notes for one event would be a second effect."""

    consumer: Consumer
    effects: list[str]
    fail_first: int = 0

    @classmethod
    def make(cls, target: Target, *, fail_first: int = 0) -> Recorder:
        name = f"test-{uuid.uuid4().hex[:12]}"
        target.groups.append(f"{target.topic}.{name}")
        effects: list[str] = []
        recorder = cls(Consumer(name, TASK_TYPES, _unset), effects, fail_first)

        async def handle(session: AsyncSession, event: ReceivedEvent) -> None:
            if recorder.fail_first:
                recorder.fail_first -= 1
                raise RuntimeError("the effect failed")
            session.add(
                AuditRecord(
                    event_id=uuid.UUID(event.id),
                    user_id=event.parleyuser,
                    action="test.seen",
                    subject=event.subject,
                    time=event.time,
                    details={"type": event.type, "consumer": name},
                )
            )
            effects.append(event.id)

        recorder.consumer = Consumer(name, TASK_TYPES, handle)
        return recorder

    async def wait_for_effects(self, count: int, within: float = WITHIN) -> list[str]:
        async def enough() -> list[str] | None:
            return self.effects if len(self.effects) >= count else None

        found: list[str] = await wait_for(enough, within=within, interval=0.05)
        return found


async def _unset(session: AsyncSession, event: ReceivedEvent) -> None:  # pragma: no cover
    raise AssertionError("replaced in Recorder.make")


@contextlib.asynccontextmanager
async def broker_app(
    database_url: str, tmp_path: Path, url: str, topic: str
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    settings = make_settings(database_url, tmp_path, events_broker=url, events_topic=topic)
    async with running_app(settings) as (application, http):
        yield application, http


@contextlib.asynccontextmanager
async def companion(app: FastAPI, consumers: Sequence[Consumer] = ()) -> AsyncIterator[None]:
    """The worker's events companion (relay and consumer loops) for `consumers`, cancelled at
    the end as a stopping worker cancels it."""
    task = asyncio.create_task(events_companion(app.state.runtime, Consumers(consumers))())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def create_task(http: httpx.AsyncClient, user: TestUser, title: str) -> dict[str, Any]:
    response = await http.post("/api/tasks", json={"title": title}, headers=user.headers)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()["data"]
    return task


async def outbox(app: FastAPI) -> list[OutboxEvent]:
    async with app.state.database.sessionmaker() as session:
        rows = await session.execute(select(OutboxEvent).order_by(OutboxEvent.id))
        return list(rows.scalars().all())


async def count_rows(app: FastAPI, model: Any, consumer: Consumer) -> int:
    async with app.state.database.sessionmaker() as session:
        if model is HandledEvent:
            query = select(func.count()).where(HandledEvent.consumer == consumer.name)
        else:
            query = select(func.count()).where(AuditRecord.action == "test.seen")
        return int((await session.execute(query.select_from(model))).scalar_one())


def assert_once_each(recorder: Recorder, expected: int) -> None:
    assert len(recorder.effects) == expected, recorder.effects
    assert len(set(recorder.effects)) == expected, "an event had a second effect"


async def nats_subjects(target: Target) -> list[str]:
    """The subjects the topic's JetStream stream captures."""
    import nats

    client = await nats.connect(target.url)
    try:
        info = await client.jetstream().stream_info(nats_stream(target.topic))
    finally:
        await client.close()
    return list(info.config.subjects or [])


# -- (1) the contract's names, body and headers ---------------------------------------------------


async def test_a_task_created_over_rest_arrives_with_the_contracts_names_and_body(
    target: Target, database_url: str, tmp_path: Path, user: TestUser
) -> None:
    async with (
        raw_reader(target.kind, target.url, target.topic) as reader,
        broker_app(database_url, tmp_path, target.url, target.topic) as (app, http),
        companion(app),
    ):
        task = await create_task(http, user, "Buy milk")
        response = await http.patch(
            f"/api/tasks/{task['id']}", json={"completed": True}, headers=user.headers
        )
        assert response.status_code == 200, response.text
        messages = await reader.read(2, within=WITHIN)
        rows = await outbox(app)
        if target.kind == "nats":
            # Checked while the app runs (under parallel tests the check after it, on a fresh
            # connection, once found no stream; the reads above had just come from it).
            assert await nats_subjects(target) == [f"{target.topic}.>"]
    assert len(messages) == 2, [message.body for message in messages]
    assert [row.type for row in rows] == ["parley.task.created.v1", "parley.task.completed.v1"]
    for message, row in zip(messages, rows, strict=True):
        # The body is the structured CloudEvent, exactly as the outbox holds it.
        assert message.body == cloud_event(row)
        assert message.body["subject"] == f"tasks/{task['id']}"
        assert message.body["parleyuser"] == user.id
        assert message.body["data"]["id"] == task["id"]
        if target.kind == "redis":
            assert message.where == target.topic  # the stream EVENTS_TOPIC
            assert set(message.headers) == {"__data__"}
        elif target.kind == "nats":
            assert message.where == f"{target.topic}.{row.type}"
            assert message.headers["Nats-Msg-Id"] == str(row.id)
            assert message.content_type == CONTENT_TYPE
            assert message.headers["ce_type"] == row.type
        elif target.kind == "rabbitmq":
            assert message.where == row.type  # the routing key
            assert message.content_type == CONTENT_TYPE
            assert message.persistent is True
            assert message.headers["ce_id"] == str(row.id)
        else:
            assert message.where == target.topic
            assert message.key == row.subject.encode()
            assert message.content_type == CONTENT_TYPE
            assert message.headers["ce_id"] == str(row.id)


async def test_a_batch_of_500_is_published_in_order(
    target: Target, database_url: str, tmp_path: Path, user: TestUser
) -> None:
    async with (
        raw_reader(target.kind, target.url, target.topic) as reader,
        broker_app(database_url, tmp_path, target.url, target.topic) as (app, _http),
    ):
        async with app.state.database.sessionmaker() as session:
            for index in range(500):
                await add_event(
                    session,
                    "parley.test.happened.v1",
                    subject=f"tests/{index % 7}",
                    user_id=uuid.UUID(user.id),
                    data={"index": index},
                )
            await session.commit()
        transport = open_transport(app.state.settings, app.state.database, Consumers())
        try:
            started = time.monotonic()
            assert await Relay(app.state.database, transport.delivery).drain() == 500
            elapsed = time.monotonic() - started
        finally:
            await transport.close()
        messages = await reader.read(500, within=WITHIN)
    indexes = [message.body["data"]["index"] for message in messages]
    assert sorted(indexes) == list(range(500))
    # Each subject's events in the order they were written (a Kafka topic may have several
    # partitions: its order is per key).
    for subject in range(7):
        assert [index for index in indexes if index % 7 == subject] == list(range(subject, 500, 7))
    if target.kind != "kafka":
        assert indexes == list(range(500))
    assert elapsed < 20, elapsed  # connecting included; one batch, published concurrently


# -- (2) a consumer through the broker: one effect per event --------------------------------------


async def test_a_consumer_has_one_effect_per_event_even_when_published_twice(
    target: Target, database_url: str, tmp_path: Path, user: TestUser
) -> None:
    recorder = Recorder.make(target)
    async with (
        broker_app(database_url, tmp_path, target.url, target.topic) as (app, http),
        companion(app, [recorder.consumer]),
    ):
        for number in range(3):
            await create_task(http, user, f"task {number}")
        await recorder.wait_for_effects(3)
        # The relay publishes the same events again (as after a crash before its commit).
        transport = open_transport(app.state.settings, app.state.database, Consumers())
        try:
            await transport.delivery.deliver(None, await outbox(app))  # type: ignore[arg-type]
        finally:
            await transport.close()
        # One more event after them: once it has its effect, the copies before it were read.
        await create_task(http, user, "the last one")
        await recorder.wait_for_effects(4)
        await asyncio.sleep(0.5)
        assert_once_each(recorder, 4)
        assert await count_rows(app, AuditRecord, recorder.consumer) == 4
        assert await count_rows(app, HandledEvent, recorder.consumer) == 4


async def test_an_effect_that_fails_is_delivered_again(
    target: Target,
    database_url: str,
    tmp_path: Path,
    user: TestUser,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from parley.events import brokers

    monkeypatch.setattr(brokers, "CLAIM_IDLE_SECONDS", 1.0)  # Redis: claim it again soon
    monkeypatch.setattr(brokers, "CLAIM_EVERY_SECONDS", 0.5)
    recorder = Recorder.make(target, fail_first=2)
    async with (
        broker_app(database_url, tmp_path, target.url, target.topic) as (app, http),
        companion(app, [recorder.consumer]),
    ):
        await create_task(http, user, "try again")
        await recorder.wait_for_effects(1)
        await asyncio.sleep(0.5)
    assert recorder.fail_first == 0
    assert_once_each(recorder, 1)


async def test_a_message_that_is_not_a_parley_event_is_dropped(
    target: Target, database_url: str, tmp_path: Path, user: TestUser
) -> None:
    from parley.events.brokers import RabbitBackend, backend_for

    recorder = Recorder.make(target)
    async with (
        broker_app(database_url, tmp_path, target.url, target.topic) as (app, http),
        companion(app, [recorder.consumer]),
    ):
        await create_task(http, user, "first")
        await recorder.wait_for_effects(1)
        backend = backend_for(target.url, target.topic)
        broker = backend.broker()
        await backend.connect(broker)
        try:
            junk = b'{"not": "a cloudevent"}'
            if target.kind == "redis":
                await broker.publish(junk, stream=target.topic)
            elif target.kind == "nats":
                await broker.publish(
                    junk,
                    subject=f"{target.topic}.parley.task.created.v1",
                    stream=nats_stream(target.topic),
                )
            elif isinstance(backend, RabbitBackend):
                await broker.publish(
                    junk, exchange=backend.exchange, routing_key="parley.task.created.v1"
                )
            else:
                await broker.publish(junk, topic=target.topic, key=b"junk")
        finally:
            await broker.stop()
        await create_task(http, user, "after the junk")
        await recorder.wait_for_effects(2)  # the junk did not block the queue
    assert_once_each(recorder, 2)


# -- (3) faults: the relay killed mid-batch; the broker gone and back --------------------------


class KilledAfterPublishing:
    """Publishes the batch, then kills the relay (cancels its task) before it commits."""

    def __init__(self, delivery: Delivery) -> None:
        self.delivery = delivery
        self.relay: asyncio.Task[Any] | None = None
        self.published = 0

    async def deliver(self, session: AsyncSession, events: Sequence[OutboxEvent]) -> None:
        await self.delivery.deliver(session, events)
        self.published += len(events)
        assert self.relay is not None
        self.relay.cancel()
        await asyncio.sleep(30)


async def test_a_relay_killed_mid_batch_loses_nothing_and_its_redelivery_has_one_effect(
    target: Target, database_url: str, tmp_path: Path, user: TestUser
) -> None:
    recorder = Recorder.make(target)
    async with broker_app(database_url, tmp_path, target.url, target.topic) as (app, http):
        transport = open_transport(
            app.state.settings, app.state.database, Consumers([recorder.consumer])
        )
        loops = [asyncio.create_task(loop()) for loop in transport.loops]
        try:
            for number in range(5):
                await create_task(http, user, f"task {number}")
            killer = KilledAfterPublishing(transport.delivery)
            killer.relay = asyncio.create_task(Relay(app.state.database, killer).drain())
            with pytest.raises(asyncio.CancelledError):
                await killer.relay
            assert killer.published == 5
            rows = await outbox(app)
            assert [row.position for row in rows] == [None] * 5  # the batch did not commit
            await recorder.wait_for_effects(5)  # the consumers had them before the crash
            # The next relay delivers the batch again, then one more event.
            assert await Relay(app.state.database, transport.delivery).drain() == 5
            await create_task(http, user, "after the crash")
            assert await Relay(app.state.database, transport.delivery).drain() == 1
            await recorder.wait_for_effects(6)
            await asyncio.sleep(0.5)
            assert [row.position for row in await outbox(app)] == list(range(1, 7))
        finally:
            stopped = await stop_loops(loops)
            await transport.close()
    assert stopped
    assert_once_each(recorder, 6)


@pytest.mark.parametrize("kind", ["nats", "kafka"])
async def test_a_broker_stopped_and_brought_back_loses_nothing(
    kind: str, database_url: str, tmp_path: Path, user: TestUser
) -> None:
    """A private broker (nats-server with its JetStream store on disk; tansu, a Kafka-protocol
    broker, in memory: it comes back empty), killed and started again on the same port."""
    process: BrokerProcess = nats_server(tmp_path) if kind == "nats" else tansu(tmp_path)
    scheme = "nats" if kind == "nats" else "kafka"
    url = f"{scheme}://127.0.0.1:{process.port}"
    target = Target(kind, url, unique_topic())
    recorder = Recorder.make(target)
    await asyncio.to_thread(process.start)
    try:
        async with (
            broker_app(database_url, tmp_path, url, target.topic) as (app, http),
            companion(app, [recorder.consumer]),
        ):
            for number in range(2):
                await create_task(http, user, f"before {number}")
            await recorder.wait_for_effects(2)
            await asyncio.to_thread(process.stop)
            for number in range(3):
                await create_task(http, user, f"while down {number}")

            async def tried() -> bool:
                return any(row.attempts > 0 for row in await outbox(app))

            await wait_for(tried, within=WITHIN)  # the relay tried, failed, and will again
            await asyncio.to_thread(process.start)
            await recorder.wait_for_effects(5, within=90)
            await asyncio.sleep(0.5)
            rows = await outbox(app)
    finally:
        await asyncio.to_thread(process.stop)
    assert process.started == 2
    assert_once_each(recorder, 5)
    assert all(row.published_at is not None for row in rows)


# -- (4) a change rolled back publishes nothing ---------------------------------------------------


async def test_a_change_rolled_back_publishes_nothing(
    target: Target, database_url: str, tmp_path: Path, user: TestUser
) -> None:
    async with (
        raw_reader(target.kind, target.url, target.topic) as reader,
        broker_app(database_url, tmp_path, target.url, target.topic) as (app, http),
        companion(app),
    ):
        async with app.state.database.sessionmaker() as session:
            await add_event(
                session,
                "parley.task.created.v1",
                subject="tasks/rolled-back",
                user_id=uuid.UUID(user.id),
                data={"id": "rolled-back"},
            )
            await session.flush()
            await session.rollback()
        missing = await http.patch(
            f"/api/tasks/{uuid.uuid4()}", json={"title": "nobody"}, headers=user.headers
        )
        assert missing.status_code == 404
        marker = await create_task(http, user, "the only one")
        messages = await reader.read(1, within=WITHIN, quiet=2.0)
    assert [message.body["subject"] for message in messages] == [f"tasks/{marker['id']}"]


# -- `parley consumers` -------------------------------------------------------------------------


def test_parley_consumers_needs_a_broker(database_url: str, tmp_path: Path) -> None:
    env = clean_environment(DATABASE_URL=database_url, EVENTS_BROKER="none")
    done = subprocess.run(
        [sys.executable, "-m", "parley", "consumers"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert b"EVENTS_BROKER is none" in done.stderr


def test_parley_consumers_runs_the_consumers_until_sigterm(
    database_url: str, tmp_path: Path
) -> None:
    topic = unique_topic()
    env = clean_environment(
        DATABASE_URL=database_url,
        JWT_SECRET="consumers-test-secret-" + "x" * 40,
        EVENTS_BROKER=REDIS_URL,
        EVENTS_TOPIC=topic,
        LOG_LEVEL="INFO",
    )
    log = tmp_path / "consumers.log"
    try:
        with log.open("wb") as output:
            process = subprocess.Popen(
                [sys.executable, "-m", "parley", "consumers"],
                cwd=tmp_path,
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 60
            while (running := re.search(r"running (\d+) event consumers", log.read_text())) is None:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            count = int(running.group(1))
            assert count >= 1
            while log.read_text().count("reading events from") < count:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            groups = asyncio.run(_redis_groups(topic))
            assert len(groups) == count, groups
            assert f"{topic}.tasks.recurrence" in groups, groups
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0, log.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    finally:
        asyncio.run(clean_up("redis", REDIS_URL, topic))
    assert "redis://127.0.0.1:6379" in log.read_text()
    assert os.environ.get("EVENTS_TOPIC") != topic


async def _redis_groups(topic: str) -> set[str]:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        groups = await client.xinfo_groups(topic)
    finally:
        await client.aclose()
    return {group["name"].decode() for group in groups}
