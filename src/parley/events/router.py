"""Events over HTTP (CONTRACT.md section 11).

- `GET /api/events` — the caller's own events as server-sent events (`id:` the event id,
  `data:` the CloudEvent JSON), from now on, or after `Last-Event-ID` when reconnecting
- `GET /api/events/schemas` — every event type with the JSON Schema of its events
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import StreamingResponse

from parley.accounts.dependencies import CurrentUser
from parley.core.errors import InvalidToken, NotAuthenticated, NotFound, ValidationFailed
from parley.core.responses import Envelope, error_responses, ok
from parley.events.catalog import event_schemas
from parley.events.dependencies import EventFeedDep
from parley.events.schemas import EventSchemas, cloud_event

events_router = APIRouter(prefix="/api/events", tags=["events"])

FEED_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
# A client that lost the connection tries again after this (the SSE `retry:` field).
RECONNECT_MS = 2000
_EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "data"],
    "properties": {
        "id": {"type": "string", "description": "The event's id: send it as Last-Event-ID."},
        "data": {"type": "string", "description": "The CloudEvent, as JSON."},
        "retry": {"type": "integer", "minimum": 0},
    },
}


@events_router.get(
    "",
    summary="Follow your events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The caller's events as a server-sent event stream.",
            "content": {"text/event-stream": {"itemSchema": _EVENT_SCHEMA}},
        },
        **error_responses(NotAuthenticated, InvalidToken, NotFound, ValidationFailed),
    },
)
async def follow_events(
    user: CurrentUser,
    feed: EventFeedDep,
    last_event_id: Annotated[
        str | None,
        Header(
            max_length=100,
            description="The id of the last event received: the stream goes on after it.",
        ),
    ] = None,
) -> StreamingResponse:
    """The caller's events (tasks created, changed, completed, deleted, ...) as they happen,
    each a CloudEvent. Without `Last-Event-ID` the stream starts with the next event; with it,
    after that event (a 404 when it is not one of the caller's, or no longer kept). The stream
    opens with a comment line, and sends one every 15 s of silence."""
    position = await feed.start(user.id, last_event_id)
    user_id = user.id

    async def body() -> AsyncIterator[bytes]:
        # A comment first: the client knows at once that the stream is open (comments are no
        # events; every event has its id and data).
        yield b": connected\n\n"
        async for event in feed.follow(user_id, position):
            if event is None:
                yield b": keep-alive\n\n"
                continue
            data = json.dumps(cloud_event(event), separators=(",", ":"), ensure_ascii=False)
            yield f"id: {event.id}\nretry: {RECONNECT_MS}\ndata: {data}\n\n".encode()

    return StreamingResponse(body(), media_type="text/event-stream", headers=FEED_HEADERS)


@events_router.get(
    "/schemas",
    summary="Event schemas",
    response_model=Envelope[EventSchemas],
    response_model_by_alias=True,
)
async def list_event_schemas() -> Envelope[EventSchemas]:
    """Every event type Parley writes, its version, what it means and the JSON Schema of its
    events (the CloudEvent envelope with its `data`). Public: it describes the API."""
    return ok(EventSchemas(items=event_schemas()))
