"""The events the chats publish (see docs/events.md): a chat created, changed (renamed, given
a generated title, archived, switched to another branch) or deleted, with the chat as clients
see it; and a reply that finished, with where it is and how it ended."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, Field

from parley.chats.schemas import ChatPublic
from parley.events.types import EventType

CHAT_CREATED = "parley.chat.created.v1"
CHAT_UPDATED = "parley.chat.updated.v1"
CHAT_DELETED = "parley.chat.deleted.v1"
MESSAGE_COMPLETED = "parley.message.completed.v1"


class MessageCompleted(BaseModel):
    """The data of `parley.message.completed.v1`."""

    chat_id: uuid.UUID
    message_id: uuid.UUID = Field(description="The assistant message (the reply).")
    parent_id: uuid.UUID | None = Field(
        description="The user message it answers (null for a reply ended by a sweep)."
    )
    status: Literal["complete", "cancelled", "error", "interrupted"] = Field(
        description="How the reply ended."
    )
    model_id: str | None
    error_code: str | None = None


CHAT_EVENTS: tuple[EventType, ...] = (
    EventType(CHAT_CREATED, ChatPublic, "A chat was created; `data` is the chat."),
    EventType(
        CHAT_UPDATED,
        ChatPublic,
        "A chat was renamed, titled, archived, re-pointed to another branch or given other "
        "settings; `data` is the chat after it.",
    ),
    EventType(CHAT_DELETED, ChatPublic, "A chat was deleted; `data` is the chat as it was."),
    EventType(
        MESSAGE_COMPLETED,
        MessageCompleted,
        "A reply finished (complete, cancelled, failed or interrupted); subject `chats/<id>`.",
    ),
)
