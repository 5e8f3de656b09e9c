"""Every write of a message row: a user message added, and the reply (the assistant message)
from its creation as `streaming` to its end; and the chat's single reply slot. Never commits.

Every write here is a Core statement on the tables, not an ORM-enabled UPDATE: the turn engine runs
them on short sessions of its own that hold no objects, and an ORM-enabled UPDATE spends more CPU
keeping a session's objects in step, on the turn's hot path (see bench/findings.md). The conditional
updates are what make a reply end, and be billed, once: of its own final save, a stop and a sweep
racing for one reply, exactly one finds it `streaming`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from parley.chats.models import Chat, Message
from parley.core.db import new_id, utcnow

_MESSAGES = cast(Table, Message.__table__)
_CHATS = cast(Table, Chat.__table__)


def new_reply(
    reply_id: uuid.UUID, parent: Message, *, model_id: str, prompt_tokens: int
) -> Message:
    """A new assistant message in progress (`streaming`) answering `parent` (a user message), not
    yet added to a session."""
    return Message(
        id=reply_id,
        chat_id=parent.chat_id,
        user_id=parent.user_id,
        parent_id=parent.id,
        role="assistant",
        parts=[],
        status="streaming",
        model_id=model_id,
        # The tokens so far (the turn's saves keep them current): what the reply is billed for
        # if its worker dies before it ends.
        input_tokens=prompt_tokens,
        output_tokens=0,
    )


async def claim_reply_slot(
    session: AsyncSession, chat_id: uuid.UUID, message_id: uuid.UUID
) -> bool:
    """Make `message_id` the chat's reply in progress and its current leaf, if the chat has no
    reply in progress. A conditional update, so of two concurrent claims exactly one wins."""
    claimed: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
        _CLAIM_SLOT, {"b_chat_id": chat_id, "b_message_id": message_id, "b_at": utcnow()}
    )
    return claimed.rowcount == 1


class ReplyProgress(NamedTuple):
    """A reply in progress as it is saved: its parts so far and the tokens they cost so far."""

    parts: list[dict[str, Any]]
    search_text: str
    input_tokens: int
    output_tokens: int


class ReplyUsage(NamedTuple):
    """What an ended reply used, as it is billed (its fields are the message's columns)."""

    input_tokens: int
    output_tokens: int
    cost_usd: Decimal


async def save_reply_progress(
    session: AsyncSession, message_id: uuid.UUID, progress: ReplyProgress
) -> None:
    """Save a reply in progress, with a fresh `updated_at` (its heartbeat)."""
    await session.execute(
        update(_MESSAGES)
        .where(_MESSAGES.c.id == message_id)
        .values(
            parts=progress.parts,
            search_text=progress.search_text,
            input_tokens=progress.input_tokens,
            output_tokens=progress.output_tokens,
            updated_at=utcnow(),
        )
    )


class ReplyEnding(NamedTuple):
    """How a reply is saved when it ends, apart from its usage (its fields are the message's
    columns)."""

    status: str
    model_id: str
    parts: list[dict[str, Any]]
    search_text: str
    error_code: str | None
    error_message: str | None
    time_to_first_token_ms: int | None
    duration_ms: int
    updated_at: datetime  # when it ended


# The turn's hot statements, built once (a statement built per call costs more to build than
# to run on SQLite; bench/findings.md). Bind names carry a `b_` prefix: a column's own name is
# reserved for the SET clause.
_CLAIM_SLOT = (
    update(_CHATS)
    .where(_CHATS.c.id == bindparam("b_chat_id"), _CHATS.c.active_message_id.is_(None))
    .values(
        active_message_id=bindparam("b_message_id"),
        current_leaf_id=bindparam("b_message_id"),
        updated_at=bindparam("b_at"),
    )
)
_END_REPLY = (
    update(_MESSAGES)
    .where(_MESSAGES.c.id == bindparam("b_message_id"), _MESSAGES.c.status == "streaming")
    .values({name: bindparam(f"b_{name}") for name in (*ReplyEnding._fields, *ReplyUsage._fields)})
)
_NAME_CHAT = (
    update(_CHATS)
    .where(_CHATS.c.id == bindparam("b_chat_id"), _CHATS.c.title.is_(None))
    .values(title=bindparam("b_title"), title_generated=True, title_reply_id=bindparam("b_reply"))
)
_FREE_SLOT = (
    update(_CHATS)
    .where(
        _CHATS.c.id == bindparam("b_chat_id"),
        _CHATS.c.active_message_id == bindparam("b_message_id"),
    )
    .values(active_message_id=None, updated_at=bindparam("b_at"))
)


async def end_reply(
    session: AsyncSession, message_id: uuid.UUID, ending: ReplyEnding, usage: ReplyUsage
) -> bool:
    """Save the reply's ending and usage if it is still `streaming`.

    Returns:
        Whether this call ended it (False: a stop or a sweep ended it first).
    """
    values = {
        f"b_{name}": value for name, value in (*ending._asdict().items(), *usage._asdict().items())
    }
    ended: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
        _END_REPLY, {"b_message_id": message_id, **values}
    )
    return ended.rowcount == 1


async def save_reply_parts(
    session: AsyncSession, message_id: uuid.UUID, ending: ReplyEnding
) -> None:
    """Save the ending of a reply that was ended elsewhere first, keeping the usage it was
    billed for there."""
    await session.execute(
        update(_MESSAGES).where(_MESSAGES.c.id == message_id).values(**ending._asdict())
    )


async def free_reply_slot(
    session: AsyncSession, chat_id: uuid.UUID, message_id: uuid.UUID, *, at: datetime
) -> None:
    """Free the chat for its next reply, if `message_id` is still its reply in progress."""
    await session.execute(
        _FREE_SLOT, {"b_chat_id": chat_id, "b_message_id": message_id, "b_at": at}
    )


async def name_chat_if_untitled(
    session: AsyncSession, chat_id: uuid.UUID, title: str, *, title_reply: uuid.UUID | None
) -> None:
    """Give the chat this title unless it has one (the user may have named it meanwhile); with
    `title_reply`, mark it for a title from its model (`parley.turns.titles`) after that reply."""
    await session.execute(
        _NAME_CHAT, {"b_chat_id": chat_id, "b_title": title, "b_reply": title_reply}
    )


async def reply_status(session: AsyncSession, message_id: uuid.UUID) -> str | None:
    """The message's status (`streaming` while its reply is in progress), or None."""
    status: str | None = await session.scalar(
        select(Message.status).where(Message.id == message_id)
    )
    return status


async def stale_streaming_replies(session: AsyncSession, cutoff: datetime) -> list[uuid.UUID]:
    """The replies still `streaming` whose last save (or heartbeat) is older than `cutoff`."""
    result = await session.execute(
        select(Message.id).where(Message.status == "streaming", Message.updated_at < cutoff)
    )
    return list(result.scalars().all())


@dataclass(frozen=True, slots=True)
class EndedReply:
    """A reply that was ended outside its turn, as it was saved when it ended."""

    id: uuid.UUID
    user_id: uuid.UUID
    chat_id: uuid.UUID
    model_id: str | None
    parts: list[dict[str, Any]]
    input_tokens: int | None
    output_tokens: int | None


async def end_streaming_replies(
    session: AsyncSession, message_ids: Sequence[uuid.UUID], status: str
) -> list[EndedReply]:
    """Give these replies `status` if they are still `streaming`: a conditional update, so that
    of a sweep, a stop and the reply's own final save racing for one reply, exactly one ends it
    (and bills it). Their chats are not freed here (`free_reply_slots`, after the billing, keeps
    the order in which a turn's start locks rows: budget before chat).

    Returns:
        The replies this call ended, as saved.
    """
    if not message_ids:
        return []
    result = await session.execute(
        update(_MESSAGES)
        .where(_MESSAGES.c.id.in_(list(message_ids)), _MESSAGES.c.status == "streaming")
        .values(status=status, updated_at=utcnow())
        .returning(
            _MESSAGES.c.id,
            _MESSAGES.c.user_id,
            _MESSAGES.c.chat_id,
            _MESSAGES.c.model_id,
            _MESSAGES.c.parts,
            _MESSAGES.c.input_tokens,
            _MESSAGES.c.output_tokens,
        )
    )
    return [EndedReply(*row) for row in result]


async def set_reply_usage(session: AsyncSession, message_id: uuid.UUID, usage: ReplyUsage) -> None:
    """Record what an ended reply used."""
    await session.execute(
        update(_MESSAGES).where(_MESSAGES.c.id == message_id).values(**usage._asdict())
    )


async def free_reply_slots(session: AsyncSession, message_ids: Sequence[uuid.UUID]) -> None:
    """The chats whose reply in progress is one of these are free for their next reply."""
    if not message_ids:
        return
    await session.execute(
        update(_CHATS)
        .where(_CHATS.c.active_message_id.in_(list(message_ids)))
        .values(active_message_id=None, updated_at=utcnow())
    )


def new_user_message(
    *,
    chat_id: uuid.UUID,
    owner_id: uuid.UUID,
    parent_id: uuid.UUID | None,
    parts: list[dict[str, Any]],
) -> Message:
    """A new user message (its plain text kept for search), not yet added to a session."""
    text = "\n".join(part["text"] for part in parts if part.get("type") == "text")
    return Message(
        id=new_id(),
        chat_id=chat_id,
        user_id=owner_id,
        parent_id=parent_id,
        role="user",
        parts=parts,
        search_text=text,
        status="complete",
    )


def add_message(session: AsyncSession, message: Message) -> Message:
    """Stage a new message (flushed with the session)."""
    session.add(message)
    return message
