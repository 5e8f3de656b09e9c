"""What an event type is: its name (`parley.<noun>.<verb>.v<N>`), the model of its data (its
versioned schema) and what it means. Each domain declares the types it publishes; a change to an
event's shape is a new type (`.v2`), never an edit of an old one, so a consumer written for
`.v1` keeps working."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel


@dataclass(frozen=True, slots=True)
class EventType:
    """An event type: its name, the model of its data, and what it means."""

    name: str
    data: type[BaseModel]
    description: str

    @property
    def version(self) -> int:
        return int(self.name.rsplit(".v", 1)[1])
