"""The CloudEvent as Parley writes it (CONTRACT.md section 11), and the responses of the events
API: the structured-mode JSON a broker carries and the live feed sends."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from parley.events.models import OutboxEvent

DataT = TypeVar("DataT")
SOURCE: Literal["parley"] = "parley"


class CloudEvent(BaseModel, Generic[DataT]):
    """A CloudEvents 1.0 event in structured mode (`application/cloudevents+json`)."""

    model_config = ConfigDict(title="CloudEvent")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(description="Unique per event: a redelivery has the same id.")
    source: Literal["parley"] = SOURCE
    type: str = Field(
        description="`parley.<noun>.<verb>.v<N>`.", examples=["parley.task.created.v1"]
    )
    subject: str = Field(description="What it is about, e.g. `tasks/<id>`.")
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    parleyuser: uuid.UUID | None = Field(description="The user whose event it is.")
    data: DataT


def cloud_event(row: OutboxEvent) -> dict[str, Any]:
    """The event of an outbox row, JSON-ready."""
    return {
        "specversion": "1.0",
        "id": str(row.id),
        "source": SOURCE,
        "type": row.type,
        "subject": row.subject,
        "time": row.time.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "parleyuser": str(row.user_id) if row.user_id else None,
        "data": row.data,
    }


class EventSchema(BaseModel):
    """One event type and the JSON Schema of its events."""

    type: str
    version: int
    description: str
    json_schema: dict[str, Any] = Field(alias="schema", serialization_alias="schema")

    model_config = ConfigDict(populate_by_name=True)


class EventSchemas(BaseModel):
    """Every event type Parley writes."""

    items: list[EventSchema]
