"""The live feed: a user's events, from a position on, as they are delivered.

`EventFeed.follow` reads the user's numbered events after a position in short transactions
(no connection is held while it waits), waits to be woken by this process's relay when it
numbers events of the user (`relay.feed_wakeups`) or for its poll (events numbered by a relay
in another process), and yields `None` when it has had nothing to say for
`heartbeat_seconds`, so proxies keep the connection open.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

from parley.core.db import Database
from parley.core.errors import NotFound, ValidationFailed
from parley.events import repository
from parley.events.models import OutboxEvent
from parley.events.relay import feed_wakeups

PAGE = 200


class EventFeed:
    """Follows a user's events (see the module docstring)."""

    def __init__(
        self, database: Database, *, poll_seconds: float = 1.0, heartbeat_seconds: float = 15.0
    ) -> None:
        self.database = database
        self.poll_seconds = poll_seconds
        self.heartbeat_seconds = heartbeat_seconds

    async def start(self, user_id: uuid.UUID, last_event_id: str | None) -> int:
        """Where a feed starts: after `last_event_id` (a reconnecting client's), else after the
        user's latest event (only new events).

        Raises:
            ValidationFailed: `last_event_id` is not an event id.
            NotFound: no such event of the user's (or it was purged).
        """
        async with self.database.sessionmaker() as session:
            if last_event_id is None or not last_event_id.strip():
                return await repository.user_last_position(session, user_id)
            try:
                event_id = uuid.UUID(last_event_id.strip())
            except ValueError:
                raise ValidationFailed.for_field(
                    "Last-Event-ID", "must be the id of an event"
                ) from None
            position = await repository.position_of(session, user_id, event_id)
        if position is None:
            raise NotFound("No such event: it may be older than the events kept.")
        return position

    async def follow(self, user_id: uuid.UUID, position: int) -> AsyncIterator[OutboxEvent | None]:
        """The user's events after `position`, as they come; `None` as a heartbeat."""
        wake = feed_wakeups.subscribe(user_id)
        quiet_since = time.monotonic()
        while True:
            wake.clear()
            async with self.database.sessionmaker() as session:
                events = await repository.user_events_after(session, user_id, position, PAGE)
            for event in events:
                position = int(event.position or position)
                yield event
            if events:
                quiet_since = time.monotonic()
                if len(events) == PAGE:
                    continue
            elif time.monotonic() - quiet_since >= self.heartbeat_seconds:
                quiet_since = time.monotonic()
                yield None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.poll_seconds):
                    await wake.wait()
