"""Task changes become CloudEvents in the outbox, numbered by the relay and followed live over
`GET /api/events` by a real HTTP client on a real server: in order, the caller's own only,
resumed after a dropped connection with `Last-Event-ID`, each valid against its published JSON
Schema; a change that fails or is rolled back tells nothing."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import httpx
import jsonschema
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from parley.events.models import OutboxEvent
from parley.jobs.worker import Worker
from parley.tasks.service import TaskService
from tests.events.conftest import follow
from tests.fixtures.accounts import TestUser
from tests.fixtures.polling import wait_for
from tests.fixtures.servers import LiveServer

TASK_TYPES = [
    "parley.task.created.v1",
    "parley.task.updated.v1",
    "parley.task.completed.v1",
    "parley.task.deleted.v1",
]


async def schemas(http: httpx.AsyncClient) -> dict[str, dict]:
    response = await http.get("/api/events/schemas")
    assert response.status_code == 200, response.text
    return {item["type"]: item for item in response.json()["data"]["items"]}


async def test_a_tasks_life_is_followed_live_and_each_event_matches_its_schema(
    live_server: LiveServer, user: TestUser, other_user: TestUser, worker: Worker
) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        published = await schemas(http)
        assert set(TASK_TYPES) <= set(published)
        async with (
            follow(http, user.headers) as mine,
            follow(http, other_user.headers) as theirs,
        ):
            created = await http.post(
                "/api/tasks", json={"title": "Buy milk", "tags": ["home"]}, headers=user.headers
            )
            task = created.json()["data"]
            await http.patch(
                f"/api/tasks/{task['id']}", json={"title": "Buy oat milk"}, headers=user.headers
            )
            await http.patch(
                f"/api/tasks/{task['id']}", json={"completed": True}, headers=user.headers
            )
            await http.delete(f"/api/tasks/{task['id']}", headers=user.headers)
            events = await mine.wait_for_count(4)
        assert mine.types() == TASK_TYPES
        assert theirs.events == []  # user B never sees A's events
    for event, event_id in zip(events, mine.ids, strict=True):
        assert event_id == event["id"]
        assert event["specversion"] == "1.0"
        assert event["source"] == "parley"
        assert event["subject"] == f"tasks/{task['id']}"
        assert event["datacontenttype"] == "application/json"
        assert event["parleyuser"] == user.id
        assert event["data"]["id"] == task["id"]
        jsonschema.validate(event, published[event["type"]]["schema"])
    assert events[0]["data"]["title"] == "Buy milk"
    assert events[0]["data"]["tags"] == ["home"]
    assert events[1]["data"]["title"] == "Buy oat milk"
    assert events[2]["data"]["completed"] is True
    assert len({event["id"] for event in events}) == 4


async def test_the_feed_resumes_after_the_last_event_received(
    live_server: LiveServer, user: TestUser, worker: Worker
) -> None:
    async with httpx.AsyncClient(base_url=live_server.url, timeout=30) as http:
        async with follow(http, user.headers) as first:
            await http.post("/api/tasks", json={"title": "one"}, headers=user.headers)
            await first.wait_for_count(1)
        last_seen = first.ids[-1]
        # While no one listens.
        for title in ("two", "three"):
            await http.post("/api/tasks", json={"title": title}, headers=user.headers)
        async with follow(http, user.headers, last_event_id=last_seen) as again:
            await http.post("/api/tasks", json={"title": "four"}, headers=user.headers)
            events = await again.wait_for_count(3)
        assert [event["data"]["title"] for event in events] == ["two", "three", "four"]
        assert again.retry == 2000
        # A fresh connection starts with the next event only.
        async with follow(http, user.headers) as fresh:
            await http.post("/api/tasks", json={"title": "five"}, headers=user.headers)
            events = await fresh.wait_for_count(1)
        assert [event["data"]["title"] for event in events] == ["five"]


async def test_a_bad_or_foreign_last_event_id_is_refused(
    client: httpx.AsyncClient, user: TestUser, other_user: TestUser, worker: Worker, app: FastAPI
) -> None:
    await client.post("/api/tasks", json={"title": "mine"}, headers=user.headers)

    async def numbered() -> OutboxEvent | None:
        async with app.state.database.sessionmaker() as session:
            found: OutboxEvent | None = await session.scalar(
                select(OutboxEvent).where(OutboxEvent.position.is_not(None))
            )
            return found

    row = await wait_for(numbered)
    for value, headers, status in (
        ("nope", user.headers, 422),
        (str(uuid.uuid4()), user.headers, 404),
        (str(row.id), other_user.headers, 404),  # another user's event is not found
    ):
        response = await client.get("/api/events", headers={**headers, "Last-Event-ID": value})
        assert response.status_code == status, (value, response.text)
        assert response.json()["error"]["code"] in ("validation_error", "not_found")
    assert (await client.get("/api/events")).status_code == 401


async def test_a_change_that_fails_or_rolls_back_tells_nothing(
    client: httpx.AsyncClient, user: TestUser, other_user: TestUser, app: FastAPI
) -> None:
    created = await client.post("/api/tasks", json={"title": "keep"}, headers=user.headers)
    task_id = created.json()["data"]["id"]
    before = await count_events(app)
    refused = [
        await client.patch(f"/api/tasks/{task_id}", json={"title": ""}, headers=user.headers),
        await client.patch(
            f"/api/tasks/{task_id}", json={"title": "taken"}, headers=other_user.headers
        ),
        await client.delete(f"/api/tasks/{task_id}", headers=other_user.headers),
        await client.post("/api/tasks", json={"title": "x" * 10_000}, headers=user.headers),
    ]
    assert [response.status_code for response in refused] == [422, 404, 404, 422]
    assert await count_events(app) == before
    # A change whose commit fails (the owner does not exist: a foreign key) leaves no event.
    async with app.state.database.sessionmaker() as session:
        service = TaskService(session, app.state.cursor_codec)
        with pytest.raises(IntegrityError):
            await service.create(SimpleNamespace(id=uuid.uuid4()), title="never")
    assert await count_events(app) == before


async def count_events(app: FastAPI) -> int:
    async with app.state.database.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(OutboxEvent)) or 0)


@pytest.mark.parametrize("title", ["<script>alert(1)</script>", "émoji 🎉", 'quote " \\ back'])
async def test_event_data_survives_any_text(
    live_server: LiveServer, user: TestUser, worker: Worker, title: str
) -> None:
    async with (
        httpx.AsyncClient(base_url=live_server.url, timeout=30) as http,
        follow(http, user.headers) as feed,
    ):
        await http.post("/api/tasks", json={"title": title}, headers=user.headers)
        events = await feed.wait_for_count(1)
    assert events[0]["data"]["title"] == title
