"""The events the chats publish (see docs/events.md): a chat created, changed (renamed, given
a generated title, archived, switched to another branch) or deleted, with the chat as clients
see it (`add_chat_event`, for the chat's use cases and its generated title alike); and a reply
that finished, with where it is and how it ended (`add_message_completed`, for a turn's final
save and a sweep alike)."""

from __future__ import annotations

import uuid
from typing import Literal

from pydantic import BaseModel, Field
from sqlalchemy.ext.asyncio import AsyncSession

from parley.chats.models import Chat
from parley.chats.schemas import ChatPublic
from parley.events.outbox import add_event, add_row_event
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


async def add_chat_event(session: AsyncSession, event_type: str, chat: Chat) -> None:
    """Write a chat's event (`CHAT_CREATED`, `CHAT_UPDATED`, `CHAT_DELETED`), the chat as
    clients see it, in `session`'s transaction."""
    await add_row_event(
        session, event_type, chat, collection="chats", view=ChatPublic, user_id=chat.user_id
    )


async def add_message_completed(
    session: AsyncSession,
    *,
    user_id: uuid.UUID,
    chat_id: uuid.UUID,
    message_id: uuid.UUID,
    parent_id: uuid.UUID | None,
    status: str,
    model_id: str | None,
    error_code: str | None = None,
) -> None:
    """Write `parley.message.completed.v1` for a reply that ended, in `session`'s transaction.

    Args:
        user_id: the chat's owner.
        chat_id: the reply's chat (the event's subject is `chats/<chat_id>`).
        message_id: the reply (the assistant message).
        parent_id: the user message it answers (None for a reply ended by a sweep).
        status: how it ended: `complete`, `cancelled`, `error` or `interrupted`.
        model_id: the model that wrote it.
        error_code: why it failed, if it did.
    """
    await add_event(
        session,
        MESSAGE_COMPLETED,
        subject=f"chats/{chat_id}",
        user_id=user_id,
        data=MessageCompleted(
            chat_id=chat_id,
            message_id=message_id,
            parent_id=parent_id,
            status=status,
            model_id=model_id,
            error_code=error_code,
        ).model_dump(mode="json"),
    )


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
