"""Recurring tasks and reminders, through the public API with Parley's own worker running (the
relay, the `events.consume` jobs of the recurrence consumer, the `tasks.remind` jobs): checked
rules, the next occurrence made once whatever the redeliveries, reminders on time and only
once, both over REST, over MCP with the real `mcp` SDK, and on the live feed of another
connection."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from parley.events.consumers import ReceivedEvent, consume, parse_event
from parley.events.models import HandledEvent, OutboxEvent
from parley.events.schemas import cloud_event
from parley.jobs.worker import Worker
from parley.tasks.models import Task
from parley.tasks.recurrence import recurrence_consumer
from parley.tasks.reminders import Reminders
from parley.tasks.rules import first_after, normalize_recurrence
from tests.events.conftest import follow
from tests.fixtures.accounts import TestUser
from tests.fixtures.errors import assert_error
from tests.fixtures.mcp import mcp_client
from tests.fixtures.polling import wait_for
from tests.fixtures.servers import LiveServer


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def next_monday_after(moment: datetime) -> datetime:
    days = (7 - moment.weekday()) % 7 or 7
    return moment + timedelta(days=days)


async def tasks_of(http: httpx.AsyncClient, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = await http.get("/api/tasks?limit=100&sort=created_at", headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["data"]["items"]
    return items


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("FREQ=WEEKLY;BYDAY=MO", "FREQ=WEEKLY;BYDAY=MO"),
        ("rrule:freq=daily;interval=2", "FREQ=DAILY;INTERVAL=2"),
        ("FREQ=MONTHLY;BYMONTHDAY=-1", "FREQ=MONTHLY;BYMONTHDAY=-1"),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29"),
    ],
)
async def test_a_rule_is_stored_in_its_normal_form(
    client: httpx.AsyncClient, user: TestUser, sent: str, stored: str
) -> None:
    response = await client.post(
        "/api/tasks", json={"title": "Repeat", "recurrence": sent}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    assert response.json()["data"]["recurrence"] == stored


@pytest.mark.parametrize(
    "rule",
    [
        "FREQ=NEVER",
        "FREQ=MINUTELY",
        "FREQ=DAILY;COUNT=3",
        "FREQ=DAILY;INTERVAL=0",
        "FREQ=DAILY;INTERVAL=100000",
        "FREQ=DAILY;BYHOUR=25",
        "FREQ=WEEKLY;BYDAY=XX",
        "FREQ=DAILY;FREQ=WEEKLY",
        "FREQ=DAILY\nDTSTART:20200101T000000Z",
        "BYDAY=MO",
        "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30",
        "FREQ=DAILY;BYMONTH=4;BYMONTHDAY=31",
        "FREQ=HOURLY;BYMONTHDAY=3",
        "FREQ=DAILY;UNTIL=20300101",
        "",
        "X" * 501,
    ],
)
async def test_a_rule_parley_cannot_follow_is_a_422(
    client: httpx.AsyncClient, user: TestUser, rule: str
) -> None:
    response = await client.post(
        "/api/tasks", json={"title": "Repeat", "recurrence": rule}, headers=user.headers
    )
    assert_error(response, 422, "validation_error")
    created = await client.post("/api/tasks", json={"title": "Plain"}, headers=user.headers)
    task_id = created.json()["data"]["id"]
    changed = await client.patch(
        f"/api/tasks/{task_id}", json={"recurrence": rule}, headers=user.headers
    )
    assert_error(changed, 422, "validation_error")


def test_a_search_for_a_rule_that_never_matches_ends_quickly() -> None:
    """dateutil alone searches such rules up to the year 9999 (seconds for a daily one); the
    shifted calendar bounds it. The figure is generous: it fails only if the bound is gone."""
    import time

    started = time.perf_counter()
    for rule in ("FREQ=DAILY;BYMONTH=2;BYMONTHDAY=30", "FREQ=WEEKLY;BYMONTH=4;BYMONTHDAY=31"):
        with pytest.raises(ValueError, match="no occurrence"):
            normalize_recurrence(rule)
    assert time.perf_counter() - started < 2.0


def test_the_shifted_calendar_finds_the_real_dates() -> None:
    thursday = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
    assert first_after("FREQ=WEEKLY;BYDAY=MO", thursday, thursday) == datetime(
        2026, 12, 7, 9, 0, tzinfo=UTC
    )
    assert first_after("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", thursday, thursday) == datetime(
        2028, 2, 29, 9, 0, tzinfo=UTC
    )
    assert first_after("FREQ=MONTHLY;BYMONTHDAY=-1", thursday, thursday) == datetime(
        2026, 12, 31, 9, 0, tzinfo=UTC
    )
    every_other_friday = first_after(
        "FREQ=WEEKLY;INTERVAL=2;BYDAY=FR", datetime(2026, 11, 20, 9, tzinfo=UTC), thursday
    )
    assert every_other_friday == datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    until = "FREQ=DAILY;UNTIL=20261205T000000Z"
    assert first_after(until, thursday, thursday) == datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
    assert first_after(until, thursday, thursday + timedelta(days=2)) is None


async def test_completing_a_recurring_task_makes_its_next_occurrence_once(
    client: httpx.AsyncClient, user: TestUser, worker: Worker
) -> None:
    due = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    remind = due - timedelta(hours=2)
    created = await client.post(
        "/api/tasks",
        json={
            "title": "Water the plants",
            "tags": ["home"],
            "priority": "high",
            "recurrence": "FREQ=WEEKLY;BYDAY=MO",
            "due_at": due.isoformat(),
            "remind_at": remind.isoformat(),
        },
        headers=user.headers,
    )
    first = created.json()["data"]
    done = await client.patch(
        f"/api/tasks/{first['id']}", json={"completed": True}, headers=user.headers
    )
    assert done.status_code == 200, done.text

    async def second_occurrence() -> dict[str, Any] | None:
        found = [t for t in await tasks_of(client, user.headers) if t["id"] != first["id"]]
        return found[0] if found else None

    following = await wait_for(second_occurrence, within=15)
    expected_due = next_monday_after(due)
    assert parse_time(following["due_at"]) == expected_due
    assert parse_time(following["remind_at"]) == expected_due - timedelta(hours=2)
    assert following["title"] == "Water the plants"
    assert following["tags"] == ["home"]
    assert following["priority"] == "high"
    assert following["recurrence"] == "FREQ=WEEKLY;BYDAY=MO"
    assert following["completed"] is False

    # Reopened and completed again: still one next occurrence.
    for completed in (False, True):
        await client.patch(
            f"/api/tasks/{first['id']}", json={"completed": completed}, headers=user.headers
        )
    await wait_for_consumed(worker, count=2)
    assert len(await tasks_of(client, user.headers)) == 2


async def wait_for_consumed(worker: Worker, *, count: int) -> None:
    """Until the recurrence consumer has handled `count` events."""

    async def handled() -> bool | None:
        async with worker.database.sessionmaker() as session:
            rows = await session.scalars(
                select(HandledEvent).where(HandledEvent.consumer == "tasks.recurrence")
            )
            return True if len(rows.all()) >= count else None

    await wait_for(handled, within=15)


async def completed_event(app: FastAPI) -> ReceivedEvent:
    """The `parley.task.completed.v1` in the outbox, as a consumer receives it."""
    async with app.state.database.sessionmaker() as session:
        row = await session.scalar(
            select(OutboxEvent).where(OutboxEvent.type == "parley.task.completed.v1")
        )
        assert row is not None
        return parse_event(cloud_event(row))


async def test_a_redelivered_completion_has_one_effect(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser
) -> None:
    """No worker: the test delivers the event itself, twice, and at once twice more."""
    created = await client.post(
        "/api/tasks", json={"title": "Daily", "recurrence": "FREQ=DAILY"}, headers=user.headers
    )
    task_id = created.json()["data"]["id"]
    await client.patch(f"/api/tasks/{task_id}", json={"completed": True}, headers=user.headers)
    event = await completed_event(app)
    consumer = recurrence_consumer()
    assert await consume(app.state.database, consumer, event) is True
    assert await consume(app.state.database, consumer, event) is False
    tasks = await tasks_of(client, user.headers)
    assert len(tasks) == 2
    # A second consumer name (as if its record were lost) is stopped by the unique occurrence.
    other = type(consumer)("tasks.recurrence.again", consumer.types, consumer.handle)
    assert await consume(app.state.database, other, event) is True
    assert len(await tasks_of(client, user.headers)) == 2


async def test_a_task_that_is_not_recurring_or_was_reopened_makes_nothing(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser
) -> None:
    created = await client.post(
        "/api/tasks", json={"title": "Daily", "recurrence": "FREQ=DAILY"}, headers=user.headers
    )
    task_id = created.json()["data"]["id"]
    await client.patch(f"/api/tasks/{task_id}", json={"completed": True}, headers=user.headers)
    await client.patch(f"/api/tasks/{task_id}", json={"completed": False}, headers=user.headers)
    event = await completed_event(app)
    assert await consume(app.state.database, recurrence_consumer(), event) is True
    assert len(await tasks_of(client, user.headers)) == 1
    # A forged event naming another user's task does nothing either.
    forged = event.model_copy(update={"id": str(uuid.uuid4()), "parleyuser": uuid.uuid4()})
    assert await consume(app.state.database, recurrence_consumer(), forged) is True
    assert len(await tasks_of(client, user.headers)) == 1


async def test_recurrence_can_be_cleared(client: httpx.AsyncClient, user: TestUser) -> None:
    created = await client.post(
        "/api/tasks", json={"title": "Weekly", "recurrence": "FREQ=WEEKLY"}, headers=user.headers
    )
    task_id = created.json()["data"]["id"]
    cleared = await client.patch(
        f"/api/tasks/{task_id}", json={"recurrence": None, "remind_at": None}, headers=user.headers
    )
    assert cleared.json()["data"]["recurrence"] is None
    assert cleared.json()["data"]["remind_at"] is None


async def test_over_mcp_a_completed_recurring_task_and_a_reminder_show_on_the_feed(
    live_server: LiveServer, user: TestUser, worker: Worker
) -> None:
    """The issue's "done when" on the default broker: a task completed over MCP makes its next
    occurrence, a reminder fires on time, and another connection (a second tab) sees both."""
    async with (
        httpx.AsyncClient(base_url=live_server.url, timeout=30) as http,
        follow(http, user.headers) as tab,
        mcp_client(f"{live_server.url}/mcp", user.access_token) as mcp,
    ):
        added = await mcp.call_tool(
            "add_task",
            {
                "title": "Team sync",
                "recurrence": "FREQ=WEEKLY;BYDAY=MO",
                "due_at": (datetime.now(UTC) + timedelta(days=2)).isoformat(),
            },
        )
        assert not added.is_error, added.content
        task = added.structured_content
        assert isinstance(task, dict)
        completed = await mcp.call_tool("complete_task", {"task_id": task["id"]})
        assert not completed.is_error, completed.content

        remind_at = datetime.now(UTC) + timedelta(seconds=2)
        reminded = await mcp.call_tool(
            "add_task", {"title": "Call the dentist", "remind_at": remind_at.isoformat()}
        )
        assert not reminded.is_error, reminded.content

        async def seen() -> list[dict[str, Any]] | None:
            kinds = tab.types()
            wanted = kinds.count("parley.task.created.v1") >= 3
            return tab.events if wanted and "parley.reminder.due.v1" in kinds else None

        events = await wait_for(seen, within=20)
    created = [e["data"] for e in events if e["type"] == "parley.task.created.v1"]
    following = [t for t in created if t["title"] == "Team sync" and t["id"] != task["id"]]
    assert len(following) == 1
    assert following[0]["recurrence"] == "FREQ=WEEKLY;BYDAY=MO"
    assert parse_time(following[0]["due_at"]).weekday() == 0
    reminder = next(e for e in events if e["type"] == "parley.reminder.due.v1")
    assert reminder["subject"] == f"tasks/{reminder['data']['task']['id']}"
    assert reminder["data"]["task"]["title"] == "Call the dentist"
    fired_late = parse_time(reminder["time"]) - remind_at
    assert timedelta(0) <= fired_late < timedelta(seconds=10)


async def test_a_reminder_fires_once_at_its_latest_time_and_not_when_done(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser
) -> None:
    """The reminder job, run by the test: at a time the task no longer has, for a task done,
    and twice for the same time."""
    soon = datetime.now(UTC) + timedelta(minutes=5)
    created = await client.post(
        "/api/tasks",
        json={"title": "Remind me", "remind_at": soon.isoformat()},
        headers=user.headers,
    )
    task = created.json()["data"]
    later = soon + timedelta(minutes=5)
    await client.patch(
        f"/api/tasks/{task['id']}", json={"remind_at": later.isoformat()}, headers=user.headers
    )
    reminders = Reminders(app.state.database)

    class Run:
        def __init__(self, when: datetime, task_id: str = task["id"]) -> None:
            self.args = {"task_id": task_id, "remind_at": when.isoformat()}

    async def reminder_events() -> list[OutboxEvent]:
        async with app.state.database.sessionmaker() as session:
            rows = await session.scalars(
                select(OutboxEvent).where(OutboxEvent.type == "parley.reminder.due.v1")
            )
            return list(rows.all())

    async with app.state.database.sessionmaker() as session:
        stored = await session.get(Task, uuid.UUID(task["id"]))
        assert stored is not None
        stored_later = stored.remind_at
    await reminders.run(Run(soon))  # type: ignore[arg-type]
    assert await reminder_events() == []
    assert stored_later is not None
    await reminders.run(Run(stored_later))  # type: ignore[arg-type]
    await reminders.run(Run(stored_later))  # type: ignore[arg-type]
    events = await reminder_events()
    assert len(events) == 1
    assert events[0].data["task"]["id"] == task["id"]

    done = await client.post(
        "/api/tasks",
        json={"title": "Done already", "remind_at": soon.isoformat(), "completed": True},
        headers=user.headers,
    )
    done_task = done.json()["data"]
    await reminders.run(Run(parse_time(done_task["remind_at"]), done_task["id"]))  # type: ignore[arg-type]
    assert len(await reminder_events()) == 1


async def test_a_reminder_job_is_queued_once_per_time(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser
) -> None:
    from parley.jobs.models import Job

    when = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    created = await client.post(
        "/api/tasks", json={"title": "Once", "remind_at": when}, headers=user.headers
    )
    task_id = created.json()["data"]["id"]
    await client.patch(f"/api/tasks/{task_id}", json={"remind_at": when}, headers=user.headers)
    await client.patch(f"/api/tasks/{task_id}", json={"title": "Once!"}, headers=user.headers)
    async with app.state.database.sessionmaker() as session:
        jobs = (await session.scalars(select(Job).where(Job.kind == "tasks.remind"))).all()
    assert len(jobs) == 1
    assert jobs[0].args["task_id"] == task_id
