"""The events issue's "done when", through each real broker: with `EVENTS_BROKER` set to Redis
Streams, NATS JetStream, RabbitMQ and a Kafka-protocol broker (tansu, not Apache Kafka), a live
server running its in-process worker as `parley serve` does (the relay publishing to the broker,
the consumers reading back from it, the reminder jobs), a recurring task completed over MCP with
the real `mcp` SDK makes its next occurrence exactly once, a reminder fires on time, and another
connection to the live feed (a second tab) sees both.

The default broker (`none`) has the same test in `test_recurrence.py`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.events.conftest import follow
from tests.fixtures.accounts import TestUser
from tests.fixtures.brokers import (
    KINDS,
    broker_url,
    clean_up,
    tansu_url,  # noqa: F401 - the session's tansu, a fixture
    unique_topic,
)
from tests.fixtures.mcp import mcp_client
from tests.fixtures.polling import wait_for
from tests.fixtures.servers import LiveServer, start_live_server_off_loop, stop_live_server_off_loop
from tests.fixtures.settings import live_settings
from tests.tasks.test_recurrence import parse_time, tasks_of

# The consumers of Parley's own that read from the broker (parley.background.event_consumers).
CONSUMERS = ("tasks.recurrence", "audit")


@pytest.fixture(params=KINDS)
async def broker_server(
    request: pytest.FixtureRequest, database_url: str, tmp_path: Path
) -> AsyncIterator[LiveServer]:
    """A live server whose in-process worker relays to the broker `request.param` on a topic of
    the test's own, and feeds Parley's consumers from it."""
    kind = str(request.param)
    url = broker_url(kind, request.getfixturevalue("tansu_url") if kind == "kafka" else "")
    topic = unique_topic()
    settings = live_settings(
        database_url,
        tmp_path,
        events_broker=url,
        events_topic=topic,
        worker_in_process=True,
        job_poll_seconds=0.2,
    )
    live = await start_live_server_off_loop(settings)
    try:
        yield live
    finally:
        await stop_live_server_off_loop(live)
        await clean_up(kind, url, topic, [f"{topic}.{name}" for name in CONSUMERS])


async def test_over_each_broker_a_completed_recurring_task_and_a_reminder_show_on_the_feed(
    broker_server: LiveServer, user: TestUser
) -> None:
    async with (
        httpx.AsyncClient(base_url=broker_server.url, timeout=30) as http,
        follow(http, user.headers) as tab,
        mcp_client(f"{broker_server.url}/mcp", user.access_token) as mcp,
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

        remind_at = datetime.now(UTC) + timedelta(seconds=3)
        reminded = await mcp.call_tool(
            "add_task", {"title": "Call the dentist", "remind_at": remind_at.isoformat()}
        )
        assert not reminded.is_error, reminded.content

        async def seen() -> list[dict[str, Any]] | None:
            kinds = tab.types()
            wanted = kinds.count("parley.task.created.v1") >= 3
            return tab.events if wanted and "parley.reminder.due.v1" in kinds else None

        # A new consumer group on tansu joins in a few seconds; the rest is well under one.
        events = await wait_for(seen, within=60)

        created = [e["data"] for e in events if e["type"] == "parley.task.created.v1"]
        following = [t for t in created if t["title"] == "Team sync" and t["id"] != task["id"]]
        assert len(following) == 1, created
        assert following[0]["recurrence"] == "FREQ=WEEKLY;BYDAY=MO"
        assert parse_time(following[0]["due_at"]).weekday() == 0
        reminder = next(e for e in events if e["type"] == "parley.reminder.due.v1")
        assert reminder["data"]["task"]["title"] == "Call the dentist"
        fired_late = parse_time(reminder["time"]) - remind_at
        assert timedelta(0) <= fired_late < timedelta(seconds=10), fired_late

        # The completion came through the broker to the consumer once: a while later there is
        # still exactly one next occurrence, over the API as on the feed.
        await asyncio.sleep(1.0)
        titles = [t["title"] for t in await tasks_of(http, user.headers)]
        assert titles.count("Team sync") == 2, titles
        assert tab.types().count("parley.reminder.due.v1") == 1

        # The audit consumer, on the broker too, recorded the MCP tool calls.
        async def audited() -> list[dict[str, Any]] | None:
            response = await http.get("/api/audit?limit=100", headers=user.headers)
            assert response.status_code == 200, response.text
            items: list[dict[str, Any]] = response.json()["data"]["items"]
            calls = [i for i in items if i["action"].startswith("tool.")]
            return items if len(calls) >= 3 else None

        await wait_for(audited, within=60)
