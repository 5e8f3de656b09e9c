"""The reply's rows for the turn engine: saving a reply in progress, ending it, freeing its chat,
and finding replies to stop or sweep.

These run on the turn's own short sessions (not a request's), so they take the session; they never
commit. The transaction belongs to the caller's use case: a turn's final save ends the reply here,
settles its usage in `usage`, then frees the chat here, in that order (the order of the row locks:
message, budget, chat, compatible with a turn's start) and commits once.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.chats import message_rows, repository
from parley.chats.message_rows import EndedReply, ReplyEnding, ReplyProgress, ReplyUsage
from parley.chats.models import Chat

__all__ = [
    "EndedReply",
    "ReplyEnding",
    "ReplyProgress",
    "ReplyUsage",
    "end_reply",
    "end_streaming_replies",
    "exchange_text",
    "free_slot",
    "free_slots",
    "record_usage",
    "save_progress",
    "set_generated_title",
    "stale_replies",
    "status_of",
]

logger = logging.getLogger(__name__)


async def save_progress(
    session: AsyncSession, message_id: uuid.UUID, progress: ReplyProgress
) -> None:
    """Save the growing reply and its tokens so far (what a sweep bills if its worker dies); the
    save is also the reply's heartbeat."""
    await message_rows.save_reply_progress(session, message_id, progress)


async def end_reply(
    session: AsyncSession, message_id: uuid.UUID, ending: ReplyEnding, usage: ReplyUsage
) -> bool:
    """Save the reply as it ended, with its usage, unless a stop or a sweep ended it first; then
    only its parts and ending are saved (its full text), keeping the usage it was billed for.

    Returns:
        Whether this call ended the reply: only then is its usage to be settled.
    """
    if await message_rows.end_reply(session, message_id, ending, usage):
        return True
    logger.warning("a reply was ended elsewhere first", extra={"message_id": str(message_id)})
    await message_rows.save_reply_parts(session, message_id, ending)
    return False


async def free_slot(
    session: AsyncSession,
    chat_id: uuid.UUID,
    message_id: uuid.UUID,
    *,
    at: datetime,
    title: str | None,
    title_reply: uuid.UUID | None = None,
) -> None:
    """Free the chat for its next reply (if this reply still holds it) and, with `title`, name it
    unless it has a name (and, with `title_reply`, mark it for a title from its model)."""
    await message_rows.free_reply_slot(session, chat_id, message_id, at=at)
    if title:
        await message_rows.name_chat_if_untitled(session, chat_id, title, title_reply=title_reply)


async def status_of(session: AsyncSession, message_id: uuid.UUID) -> str | None:
    """The reply's status (`streaming` until it ends), or None if there is no such message."""
    return await message_rows.reply_status(session, message_id)


async def stale_replies(session: AsyncSession, cutoff: datetime) -> list[uuid.UUID]:
    """The replies in progress with no save (nor heartbeat) since `cutoff`."""
    return await message_rows.stale_streaming_replies(session, cutoff)


async def end_streaming_replies(
    session: AsyncSession, message_ids: Sequence[uuid.UUID], status: str
) -> list[EndedReply]:
    """End these replies with `status` where they are still `streaming` (each ends once, whoever
    gets there first). Their usage is then recorded (`record_usage`) and their chats freed
    (`free_slots`), after the billing.

    Returns:
        The replies this call ended, as saved.
    """
    return await message_rows.end_streaming_replies(session, message_ids, status)


async def record_usage(session: AsyncSession, message_id: uuid.UUID, usage: ReplyUsage) -> None:
    """Record what a reply ended by `end_streaming_replies` used."""
    await message_rows.set_reply_usage(session, message_id, usage)


async def free_slots(session: AsyncSession, message_ids: Sequence[uuid.UUID]) -> None:
    """Free the chats whose reply in progress is one of these."""
    await message_rows.free_reply_slots(session, message_ids)


async def exchange_text(
    session: AsyncSession,
    owner_id: uuid.UUID,
    chat_id: uuid.UUID,
    user_message_id: uuid.UUID,
    reply_id: uuid.UUID,
) -> tuple[str, str] | None:
    """The plain text of one of the owner's exchanges (a prompt and its reply), or None if either
    message is gone."""
    prompt = await repository.get_message(session, owner_id, chat_id, user_message_id)
    reply = await repository.get_message(session, owner_id, chat_id, reply_id)
    if prompt is None or reply is None:
        return None
    return prompt.search_text or "", reply.search_text or ""


async def set_generated_title(
    session: AsyncSession, owner_id: uuid.UUID, chat_id: uuid.UUID, title: str
) -> bool:
    """Give one of the owner's chats a generated title, unless its title is the user's own (or
    the chat is deleted); whether it was set."""
    result = await session.execute(
        update(Chat)
        .where(
            Chat.id == chat_id,
            Chat.user_id == owner_id,
            Chat.deleted_at.is_(None),
            or_(Chat.title.is_(None), Chat.title_generated.is_(True)),
        )
        # `updated_at` orders chats by activity: a new title is none.
        .values(title=title, title_generated=True, updated_at=Chat.updated_at)
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0))
