"""Events-test helpers: a reader of the live feed over a real connection (SSE parsed as a
browser's EventSource would), collecting events in the background, and a user whose sign-up
event is gone again (`quiet_user`, for tests that count every outbox row or broker message)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete

from parley.accounts.events import REGISTERED
from parley.events.models import OutboxEvent
from tests.fixtures.accounts import TestUser, UserFactory
from tests.fixtures.polling import wait_for


@pytest.fixture
async def quiet_user(make_user: UserFactory, app: FastAPI) -> TestUser:
    """A user whose sign-up event (`parley.account.registered.v1`) is deleted from the outbox
    again: what follows in the outbox, and on a broker, is only the test's own."""
    made = await make_user()
    async with app.state.database.sessionmaker() as session:
        await session.execute(delete(OutboxEvent))
        await session.commit()
    return made


@dataclass
class FeedReader:
    """The events one connection to `GET /api/events` received, in order."""

    response: httpx.Response
    events: list[dict[str, Any]] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    comments: int = 0
    retry: int | None = None

    async def read(self) -> None:
        data: list[str] = []
        event_id: str | None = None
        async for line in self.response.aiter_lines():
            if line == "":
                if data:
                    event = json.loads("\n".join(data))
                    # The test user's sign-up commits before the feed connects, but the relay
                    # may number it just after, so that it is "the next event"; none of these
                    # tests is about it (tests/events/test_audit.py is).
                    if event["type"] != REGISTERED:
                        self.events.append(event)
                        self.ids.append(event_id or "")
                data, event_id = [], None
            elif line.startswith(":"):
                self.comments += 1
            elif line.startswith("id:"):
                event_id = line[3:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].lstrip())
            elif line.startswith("retry:"):
                self.retry = int(line[6:].strip())

    async def wait_for_count(self, count: int, within: float = 10) -> list[dict[str, Any]]:
        async def enough() -> list[dict[str, Any]] | None:
            return self.events if len(self.events) >= count else None

        result: list[dict[str, Any]] = await wait_for(enough, within=within)
        return result

    def types(self) -> list[str]:
        return [event["type"] for event in self.events]


@contextlib.asynccontextmanager
async def follow(
    http: httpx.AsyncClient, headers: dict[str, str], last_event_id: str | None = None
) -> AsyncIterator[FeedReader]:
    """Connect to the feed and read it in the background until the block ends."""
    request_headers = dict(headers)
    if last_event_id is not None:
        request_headers["Last-Event-ID"] = last_event_id
    async with http.stream("GET", "/api/events", headers=request_headers) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        reader = FeedReader(response)
        task = asyncio.ensure_future(reader.read())
        try:
            # The feed's starting point is fixed before its first byte (the `: connected` line).
            await wait_for(lambda: _true_when(reader.comments > 0), within=10)
            yield reader
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await task


async def _true_when(condition: bool) -> bool | None:
    return True if condition else None
