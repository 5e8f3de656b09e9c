"""`EVENTS_BROKER=dapr`: contract tests against Dapr's documented HTTP API (the pub/sub API
reference, the CloudEvents and subscription guides, app API token authentication), with a
loopback stand-in for the sidecar (`tests.fakes.dapr_sidecar`). These are not tests of daprd:
no daprd runs here; the stand-in takes publishes and delivers messages the way the documents (and
daprd's HTTP delivery code) say daprd does, and reads Parley's answers the way daprd would.

Out: a task created over REST reaches the sidecar's publish API as Parley's own CloudEvent (path,
content type, partition key, token, body); a sidecar that fails or is gone loses nothing. In: the
programmatic subscription; deliveries answered SUCCESS (one effect however often delivered, and
for types no consumer handles), DROP (not a Parley CloudEvent, not Parley's topic), RETRY (an
effect failed); only the sidecar is heard (its token when one is set, else loopback), and the
routes exist only with EVENTS_BROKER=dapr. One round trip runs a real consumer, recurring tasks.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.core.db import new_id
from parley.events.consumers import Consumer, Consumers, ReceivedEvent
from parley.events.dapr import DaprDelivery, DaprPublishFailed
from parley.events.models import HandledEvent, OutboxEvent
from parley.events.relay import Relay
from parley.settings import Settings
from tests.fakes.dapr_sidecar import FakeDaprSidecar, Published, running_dapr_sidecar
from tests.fakes.loopback import free_port
from tests.fixtures.accounts import TestUser
from tests.fixtures.apps import running_app
from tests.fixtures.polling import wait_for
from tests.fixtures.servers import (
    LiveServer,
    start_live_server_off_loop,
    stop_live_server_off_loop,
)
from tests.fixtures.settings import make_settings

PUBSUB = "parley-pubsub"
TOPIC = "parley.contract-events"
ROUTE = f"/dapr/events/{TOPIC}"
CREATED = "parley.task.created.v1"
CLOUD_EVENT_FIELDS = {
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "parleyuser",
    "data",
}


@pytest.fixture(scope="module")
def sidecar() -> Iterator[FakeDaprSidecar]:
    with running_dapr_sidecar(pubsubs=(PUBSUB,)) as fake:
        yield fake


@pytest.fixture(autouse=True)
def _fresh_sidecar(sidecar: FakeDaprSidecar) -> Iterator[None]:
    sidecar.reset()
    yield
    sidecar.reset()
    sidecar.api_token = None
    sidecar.app_api_token = None


def dapr_settings(
    database_url: str, data_dir: Path, sidecar: FakeDaprSidecar, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "events_broker": "dapr",
        "dapr_http_endpoint": sidecar.url,
        "dapr_pubsub_name": PUBSUB,
        "events_topic": TOPIC,
    }
    values.update(overrides)
    return make_settings(database_url, data_dir, **values)


@pytest.fixture(scope="module")
async def dapr_server(
    database_url: str, data_dir: Path, sidecar: FakeDaprSidecar
) -> AsyncIterator[LiveServer]:
    """Parley with EVENTS_BROKER=dapr on a real loopback port (no worker: deliveries only)."""
    live = await start_live_server_off_loop(dapr_settings(database_url, data_dir, sidecar))
    yield live
    await stop_live_server_off_loop(live)


@pytest.fixture
async def to_parley(dapr_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """The sidecar's connection to the app: real HTTP from loopback."""
    async with httpx.AsyncClient(base_url=dapr_server.url, timeout=30) as http:
        yield http


class Recorder:
    """A test consumer of task creations: records each event it is given; fails `failures`
    times first."""

    def __init__(self, name: str = "tests.dapr-contract", failures: int = 0) -> None:
        self.failures = failures
        self.events: list[ReceivedEvent] = []
        self.calls = 0
        self.consumer = Consumer(name, frozenset({CREATED}), self.handle)

    async def handle(self, session: AsyncSession, event: ReceivedEvent) -> None:
        self.calls += 1
        if self.failures:
            self.failures -= 1
            raise RuntimeError("the effect failed")
        self.events.append(event)


@pytest.fixture
def recorder(dapr_server: LiveServer) -> Iterator[Recorder]:
    """A `Recorder` among the live app's consumers (Parley's own stay) for one test."""
    recorder = Recorder()
    state = dapr_server.app.state
    original: Consumers = state.event_consumers
    state.event_consumers = Consumers([*original, recorder.consumer])
    yield recorder
    state.event_consumers = original


def task_event(user_id: str, event_type: str = CREATED, **changes: Any) -> dict[str, Any]:
    """A CloudEvent as Parley writes one (`parley.events.schemas.cloud_event`)."""
    task_id = str(new_id())
    event = {
        "specversion": "1.0",
        "id": str(new_id()),
        "source": "parley",
        "type": event_type,
        "subject": f"tasks/{task_id}",
        "time": "2026-12-03T10:41:07.123456Z",
        "datacontenttype": "application/json",
        "parleyuser": user_id,
        "data": {"id": task_id, "title": "Buy milk"},
    }
    event.update(changes)
    return event


async def publish(sidecar: FakeDaprSidecar, event: dict[str, Any]) -> Published:
    """Publish `event` to the stand-in as Parley does; the message it keeps."""
    before = len(sidecar.published)
    async with httpx.AsyncClient(base_url=sidecar.url) as http:
        response = await http.post(
            f"/v1.0/publish/{PUBSUB}/{TOPIC}",
            content=json.dumps(event),
            params={"metadata.partitionKey": event["subject"]},
            headers={"content-type": "application/cloudevents+json"},
        )
    assert response.status_code == 204, response.text
    return sidecar.published[before]


async def handled_rows(app: FastAPI, consumer: str) -> int:
    async with app.state.database.sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(HandledEvent).where(HandledEvent.consumer == consumer)
        )
        return int(count or 0)


async def outbox_row(app: FastAPI, subject: str, event_type: str) -> OutboxEvent | None:
    async with app.state.database.sessionmaker() as session:
        row: OutboxEvent | None = await session.scalar(
            select(OutboxEvent).where(
                OutboxEvent.subject == subject, OutboxEvent.type == event_type
            )
        )
        return row


def task_published(sidecar: FakeDaprSidecar, event_type: str, task_id: str) -> list[Published]:
    return [
        item
        for item in sidecar.published
        if item.body["type"] == event_type and item.body["data"]["id"] == task_id
    ]


def assert_enveloped_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"trace_id", "error"}, body
    assert body["error"]["code"] == code, body


# -- out: publishing to the sidecar --------------------------------------------------------------


async def test_dapr_contract_a_task_created_over_rest_is_published_as_parleys_cloud_event(
    database_url: str, data_dir: Path, sidecar: FakeDaprSidecar, app: FastAPI, user: TestUser
) -> None:
    # `parley serve` with its in-process worker, whose relay publishes to the sidecar; the
    # sidecar asks for DAPR_API_TOKEN.
    sidecar.api_token = "publish-secret"
    settings = dapr_settings(
        database_url, data_dir, sidecar, worker_in_process=True, dapr_api_token="publish-secret"
    )
    live = await start_live_server_off_loop(settings)
    try:
        async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
            created = await http.post(
                "/api/tasks", json={"title": "Buy milk", "tags": ["home"]}, headers=user.headers
            )
            assert created.status_code == 201, created.text
            task = created.json()["data"]

            async def published() -> list[Published]:
                return task_published(sidecar, CREATED, task["id"])

            (message,) = await wait_for(published, within=15)
            schemas = (await http.get("/api/events/schemas")).json()["data"]["items"]
    finally:
        await stop_live_server_off_loop(live)

    assert message.path == f"/v1.0/publish/{PUBSUB}/{TOPIC}"
    assert message.headers["content-type"] == "application/cloudevents+json"
    assert message.headers["dapr-api-token"] == "publish-secret"
    assert message.metadata == {"partitionKey": f"tasks/{task['id']}"}
    row = await outbox_row(app, f"tasks/{task['id']}", CREATED)
    assert row is not None
    assert row.published_at is not None
    body = message.body
    assert set(body) == CLOUD_EVENT_FIELDS
    assert body["id"] == str(row.id)  # Parley's id, not one of Dapr's
    assert body["specversion"] == "1.0"
    assert body["source"] == "parley"
    assert body["type"] == CREATED
    assert body["subject"] == f"tasks/{task['id']}"
    assert body["datacontenttype"] == "application/json"
    assert body["parleyuser"] == user.id
    assert body["data"]["title"] == "Buy milk"
    assert body["data"]["tags"] == ["home"]
    schema = next(item["schema"] for item in schemas if item["type"] == CREATED)
    jsonschema.validate(body, schema)
    # What the broker holds is that event, with Dapr's routing and tracing fields beside it.
    kept = message.cloud_event
    assert {key: kept[key] for key in CLOUD_EVENT_FIELDS} == body
    assert kept["topic"] == TOPIC
    assert kept["pubsubname"] == PUBSUB
    assert kept["traceparent"]
    assert sidecar.refused == []


@pytest.mark.parametrize("outage", ["answers 500", "port closed"])
async def test_dapr_contract_nothing_is_lost_while_the_sidecar_is_down(
    outage: str,
    database_url: str,
    data_dir: Path,
    sidecar: FakeDaprSidecar,
    app: FastAPI,
    client: httpx.AsyncClient,
    user: TestUser,
) -> None:
    created = await client.post("/api/tasks", json={"title": "kept"}, headers=user.headers)
    assert created.status_code == 201, created.text
    task_id = created.json()["data"]["id"]
    if outage == "answers 500":
        sidecar.fail_with = 500  # daprd's answer when the broker does not take the message
        down = DaprDelivery(dapr_settings(database_url, data_dir, sidecar))
        reason = "answered 500"
    else:
        endpoint = f"http://127.0.0.1:{free_port()}"
        down = DaprDelivery(
            dapr_settings(database_url, data_dir, sidecar, dapr_http_endpoint=endpoint)
        )
        reason = "cannot be reached"
    up = DaprDelivery(dapr_settings(database_url, data_dir, sidecar))
    try:
        for attempt in (1, 2):
            with pytest.raises(DaprPublishFailed, match=reason):
                await Relay(app.state.database, down).relay_batch()
            row = await outbox_row(app, f"tasks/{task_id}", CREATED)
            assert row is not None
            assert row.position is None  # still pending
            assert row.published_at is None
            assert row.attempts == attempt
            assert reason in (row.last_error or "")
        assert task_published(sidecar, CREATED, task_id) == []
        sidecar.fail_with = None  # the sidecar is back
        assert await Relay(app.state.database, up).drain() >= 1
    finally:
        await down.close()
        await up.close()
    (message,) = task_published(sidecar, CREATED, task_id)
    row = await outbox_row(app, f"tasks/{task_id}", CREATED)
    assert row is not None
    assert message.body["id"] == str(row.id)
    assert row.position is not None
    assert row.published_at is not None


# -- in: the subscription and the deliveries -----------------------------------------------------


async def test_dapr_contract_subscribe_lists_parleys_programmatic_subscription(
    sidecar: FakeDaprSidecar, to_parley: httpx.AsyncClient
) -> None:
    response = await to_parley.get("/dapr/subscribe")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json() == [{"pubsubname": PUBSUB, "topic": TOPIC, "routes": {"default": ROUTE}}]
    (subscription,) = await sidecar.subscriptions(to_parley)
    assert (subscription.pubsub, subscription.topic, subscription.path) == (PUBSUB, TOPIC, ROUTE)
    # Sidecar plumbing, not the public API.
    paths = (await to_parley.get("/openapi.json")).json()["paths"]
    assert not [path for path in paths if path.startswith("/dapr")]


async def test_dapr_contract_a_handled_event_succeeds_with_one_effect_however_often_delivered(
    sidecar: FakeDaprSidecar,
    to_parley: httpx.AsyncClient,
    recorder: Recorder,
    dapr_server: LiveServer,
    app: FastAPI,
    user: TestUser,
) -> None:
    message = await publish(sidecar, task_event(user.id))
    sent = message.body
    first = await sidecar.deliver(to_parley, message)
    again = await sidecar.deliver(to_parley, message)  # at least once: a redelivery
    for attempts in (first, again):
        assert [attempt.outcome for attempt in attempts] == ["SUCCESS"]
        assert attempts[0].status_code == 200
        assert attempts[0].answer == {"status": "SUCCESS"}
        assert attempts[0].path == ROUTE
        assert attempts[0].headers["content-type"] == "application/cloudevents+json"
    (event,) = recorder.events
    assert recorder.calls == 1
    assert event.id == sent["id"]
    assert event.type == CREATED
    assert event.subject == sent["subject"]
    assert str(event.parleyuser) == user.id
    assert event.data == sent["data"]
    assert await handled_rows(app, recorder.consumer.name) == 1
    # Parley's own consumers are there too (the worker's registry).
    names = {consumer.name for consumer in dapr_server.app.state.event_consumers}
    assert {"tasks.recurrence", recorder.consumer.name} <= names


async def test_dapr_contract_an_event_no_consumer_handles_succeeds(
    sidecar: FakeDaprSidecar, to_parley: httpx.AsyncClient, recorder: Recorder, user: TestUser
) -> None:
    message = await publish(sidecar, task_event(user.id, "parley.nothing.happened.v1"))
    attempts = await sidecar.deliver(to_parley, message)
    assert [attempt.outcome for attempt in attempts] == ["SUCCESS"]  # never RETRY
    assert attempts[0].answer == {"status": "SUCCESS"}
    assert recorder.calls == 0


def _garbage(user_id: str) -> dict[str, bytes]:
    event = task_event(user_id)
    without_id = {key: value for key, value in event.items() if key != "id"}
    return {
        "not JSON": b"{not json",
        "not UTF-8": b'{"id": "\xff\xfe"}',
        "not an object": b"[1, 2, 3]",
        "no id": json.dumps(without_id).encode(),
        "no specversion": json.dumps(
            {key: value for key, value in event.items() if key != "specversion"}
        ).encode(),
        "specversion 0.3": json.dumps({**event, "specversion": "0.3"}).encode(),
        "another source": json.dumps({**event, "source": "elsewhere"}).encode(),
        "id not a UUID": json.dumps({**event, "id": "abc"}).encode(),
        "data not an object": json.dumps({**event, "data": "text"}).encode(),
        "too deep": b"[" * 100_000 + b"]" * 100_000,
    }


async def test_dapr_contract_what_is_not_a_parley_cloud_event_is_dropped(
    sidecar: FakeDaprSidecar, to_parley: httpx.AsyncClient, recorder: Recorder, user: TestUser
) -> None:
    for case, body in _garbage(user.id).items():
        attempt = await sidecar.post(to_parley, ROUTE, body)
        assert attempt.status_code == 200, (case, attempt)
        assert attempt.answer == {"status": "DROP"}, (case, attempt)
        assert attempt.outcome == "DROP", case
    # A Parley event, but on a topic Parley does not subscribe to.
    valid = json.dumps(task_event(user.id)).encode()
    attempt = await sidecar.post(to_parley, "/dapr/events/someone.elses.topic", valid)
    assert (attempt.status_code, attempt.answer) == (200, {"status": "DROP"})
    assert recorder.calls == 0


async def test_dapr_contract_an_effect_that_fails_is_retried_until_it_is_applied(
    sidecar: FakeDaprSidecar,
    to_parley: httpx.AsyncClient,
    recorder: Recorder,
    app: FastAPI,
    user: TestUser,
) -> None:
    recorder.failures = 2
    message = await publish(sidecar, task_event(user.id))
    (attempt,) = await sidecar.deliver(to_parley, message, max_attempts=1)
    assert (attempt.status_code, attempt.answer) == (200, {"status": "RETRY"})
    assert await handled_rows(app, recorder.consumer.name) == 0  # nothing of it was kept
    attempts = await sidecar.deliver(to_parley, message)  # daprd redelivers a RETRY
    assert [attempt.outcome for attempt in attempts] == ["RETRY", "SUCCESS"]
    assert recorder.calls == 3
    assert [event.id for event in recorder.events] == [message.body["id"]]
    assert await handled_rows(app, recorder.consumer.name) == 1


async def test_dapr_contract_pending_messages_are_delivered_in_order(
    sidecar: FakeDaprSidecar, to_parley: httpx.AsyncClient, recorder: Recorder, user: TestUser
) -> None:
    sent = [await publish(sidecar, task_event(user.id)) for _ in range(3)]
    results = await sidecar.deliver_pending(to_parley)
    assert [[attempt.outcome for attempt in attempts] for attempts in results] == [["SUCCESS"]] * 3
    assert [event.id for event in recorder.events] == [item.body["id"] for item in sent]
    assert await sidecar.deliver_pending(to_parley) == []  # nothing left


# -- only the sidecar is heard -------------------------------------------------------------------


async def test_dapr_contract_the_app_api_token_is_required_when_set(
    database_url: str, data_dir: Path, sidecar: FakeDaprSidecar, user: TestUser
) -> None:
    settings = dapr_settings(database_url, data_dir, sidecar, dapr_app_api_token="app-secret")
    body = json.dumps(task_event(user.id, "parley.nothing.happened.v1")).encode()
    async with running_app(settings) as (application, _):
        # Any address, loopback or not: with a token, the token decides.
        for address in (("127.0.0.1", 4000), ("10.1.2.3", 1234)):
            transport = httpx.ASGITransport(app=application, client=address)
            async with httpx.AsyncClient(transport=transport, base_url="http://parley") as http:
                for token, status, code in (
                    (None, 401, "not_authenticated"),
                    ("wrong", 401, "invalid_token"),
                    ("app-secret-but-longer", 401, "invalid_token"),
                ):
                    sidecar.app_api_token = token
                    attempt = await sidecar.post(http, ROUTE, body)
                    assert attempt.status_code == status, (address, token, attempt)
                    assert attempt.answer["error"]["code"] == code
                    assert attempt.outcome == "RETRY"  # daprd does not lose it meanwhile
                    headers = {"dapr-api-token": token} if token else {}
                    listed = await http.get("/dapr/subscribe", headers=headers)
                    assert_enveloped_error(listed, status, code)
                sidecar.app_api_token = "app-secret"
                attempt = await sidecar.post(http, ROUTE, body)
                assert (attempt.status_code, attempt.answer) == (200, {"status": "SUCCESS"})
                assert len(await sidecar.subscriptions(http)) == 1


async def test_dapr_contract_without_a_token_only_loopback_is_heard(
    database_url: str, data_dir: Path, sidecar: FakeDaprSidecar, user: TestUser
) -> None:
    settings = dapr_settings(database_url, data_dir, sidecar)
    body = json.dumps(task_event(user.id, "parley.nothing.happened.v1")).encode()
    async with running_app(settings) as (application, _):
        for address in (("10.1.2.3", 1234), ("192.168.0.7", 80), ("::ffff:10.0.0.1", 9)):
            transport = httpx.ASGITransport(app=application, client=address)
            async with httpx.AsyncClient(transport=transport, base_url="http://parley") as http:
                attempt = await sidecar.post(http, ROUTE, body)
                assert attempt.status_code == 403, (address, attempt)
                assert attempt.answer["error"]["code"] == "forbidden"
                assert_enveloped_error(await http.get("/dapr/subscribe"), 403, "forbidden")
        for address in (("127.0.0.1", 4000), ("::1", 4000), ("::ffff:127.0.0.1", 4000)):
            transport = httpx.ASGITransport(app=application, client=address)
            async with httpx.AsyncClient(transport=transport, base_url="http://parley") as http:
                attempt = await sidecar.post(http, ROUTE, body)
                assert (attempt.status_code, attempt.answer) == (200, {"status": "SUCCESS"})
                # From loopback, but relayed by a proxy: not the sidecar.
                relayed = await sidecar.post(
                    http, ROUTE, body, headers={"x-forwarded-for": "203.0.113.9"}
                )
                assert relayed.status_code == 403


async def test_dapr_contract_the_routes_do_not_exist_without_the_dapr_broker(
    sidecar: FakeDaprSidecar, client: httpx.AsyncClient, user: TestUser
) -> None:
    body = json.dumps(task_event(user.id)).encode()
    for path in ("/dapr/events/parley.events", ROUTE):
        attempt = await sidecar.post(client, path, body)
        assert attempt.status_code == 404
        assert attempt.answer["error"]["code"] == "not_found"
        assert attempt.outcome == "DROP"  # what daprd does with a 404
    assert_enveloped_error(await client.get("/dapr/subscribe"), 404, "not_found")


# -- a round trip through a real consumer --------------------------------------------------------


async def test_dapr_contract_a_recurring_task_completed_comes_back_as_its_next_occurrence(
    database_url: str, data_dir: Path, sidecar: FakeDaprSidecar, user: TestUser
) -> None:
    settings = dapr_settings(database_url, data_dir, sidecar, worker_in_process=True)
    live = await start_live_server_off_loop(settings)
    try:
        async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
            created = await http.post(
                "/api/tasks",
                json={
                    "title": "Water the plants",
                    "due_at": "2030-01-07T09:00:00Z",
                    "recurrence": "FREQ=WEEKLY",
                },
                headers=user.headers,
            )
            assert created.status_code == 201, created.text
            task = created.json()["data"]
            done = await http.patch(
                f"/api/tasks/{task['id']}", json={"completed": True}, headers=user.headers
            )
            assert done.status_code == 200, done.text

            async def completed() -> list[Published]:
                return task_published(sidecar, "parley.task.completed.v1", task["id"])

            (message,) = await wait_for(completed, within=15)
            for _ in range(2):  # delivered twice: one next occurrence
                attempts = await sidecar.deliver(http, message)
                assert [attempt.outcome for attempt in attempts] == ["SUCCESS"]
            listed = await http.get("/api/tasks", headers=user.headers)
            tasks = listed.json()["data"]["items"]
            assert len(tasks) == 2, tasks
            (following,) = [item for item in tasks if item["id"] != task["id"]]
            assert following["title"] == "Water the plants"
            assert following["completed"] is False
            assert following["due_at"].startswith("2030-01-14T09:00:00")

            # The next occurrence is an event of its own, published through the sidecar too.
            async def next_created() -> list[Published]:
                return task_published(sidecar, CREATED, following["id"])

            await wait_for(next_created, within=15)
    finally:
        await stop_live_server_off_loop(live)
