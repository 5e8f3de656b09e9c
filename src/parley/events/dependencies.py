"""`EventFeedDep`: the live feed over the app's database."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from parley.events.service import EventFeed


async def get_event_feed(request: Request) -> EventFeed:
    """The feed over the app's database (it opens a short session per read)."""
    feed: EventFeed = request.app.state.event_feed
    return feed


EventFeedDep = Annotated[EventFeed, Depends(get_event_feed)]
