"""Every event type Parley writes, gathered from the domains that publish them, with the JSON
Schema of a whole event of each (`GET /api/events/schemas`)."""

from __future__ import annotations

from functools import cache
from typing import Any

from parley.accounts.events import ACCOUNT_EVENTS
from parley.chats.events import CHAT_EVENTS
from parley.events.schemas import CloudEvent, EventSchema
from parley.events.types import EventType
from parley.files.events import FILE_EVENTS
from parley.tasks.events import TASK_EVENTS
from parley.tasks.reminders import REMINDER_EVENTS
from parley.tools.events import TOOL_EVENTS

EVENT_TYPES: tuple[EventType, ...] = (
    *TASK_EVENTS,
    *REMINDER_EVENTS,
    *CHAT_EVENTS,
    *FILE_EVENTS,
    *ACCOUNT_EVENTS,
    *TOOL_EVENTS,
)


@cache
def event_schemas() -> list[EventSchema]:
    """Each type with the JSON Schema of a whole event of it (the envelope and its data)."""
    schemas = []
    for kind in EVENT_TYPES:
        model: Any = CloudEvent[kind.data]  # type: ignore[name-defined]
        schema = model.model_json_schema()
        schema["title"] = kind.name
        schema["properties"]["type"] = {"const": kind.name, "title": "Type", "type": "string"}
        schemas.append(
            EventSchema(
                type=kind.name,
                version=kind.version,
                description=kind.description,
                json_schema=schema,
            )
        )
    return schemas
