"""Queries over chats and their message trees (every write of a message row is in
`message_rows`). Never commits.

Every read starts from `readable_chats(owner_id)` or `readable_messages(owner_id)`: another user's
chat or message is simply not there. Deleted chats are gone from every read.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, bindparam, exists, func, literal, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.chats.models import Chat, Message
from parley.core.db import LIKE_ESCAPE, contains_pattern
from parley.core.pagination import CursorCodec, SortKey, paginate

CHATS_BY_ACTIVITY = SortKey("-updated_at", Chat.updated_at, descending=True)
# A page of a message path is named by the message it continues from (towards the root).
PATH_CURSOR = SortKey("path", Message.id, descending=True, kind="uuid")


def readable_chats(owner_id: uuid.UUID) -> Select[Chat]:
    """The owner's chats that are not deleted: the start of every chat read."""
    return select(Chat).where(Chat.user_id == owner_id, Chat.deleted_at.is_(None))


def readable_messages(owner_id: uuid.UUID, chat_id: uuid.UUID) -> Select[Message]:
    """The owner's messages of one chat: the start of every message read."""
    return select(Message).where(Message.user_id == owner_id, Message.chat_id == chat_id)


# A chat by its id, built once: every turn reads its chat first (bench/findings.md).
_GET_CHAT = readable_chats(bindparam("b_owner_id")).where(  # type: ignore[arg-type]
    Chat.id == bindparam("b_chat_id")
)


async def get_chat(session: AsyncSession, owner_id: uuid.UUID, chat_id: uuid.UUID) -> Chat | None:
    """One of the owner's chats, or None."""
    result = await session.execute(_GET_CHAT, {"b_owner_id": owner_id, "b_chat_id": chat_id})
    return result.scalar_one_or_none()


async def list_chats(
    session: AsyncSession,
    owner_id: uuid.UUID,
    *,
    q: str | None,
    archived: bool | None,
    codec: CursorCodec,
    cursor: str | None,
    limit: int,
) -> tuple[list[Chat], str | None]:
    """A page of the owner's chats, newest activity first.

    Args:
        q: text in the title or in any message of the chat (case-insensitive).
        archived: only archived (True) or only active (False) chats; both when None.
    """
    statement = readable_chats(owner_id)
    if archived is not None:
        statement = statement.where(Chat.archived.is_(archived))
    if q:
        pattern = contains_pattern(q.lower())
        in_messages = exists(
            select(literal(1)).where(
                Message.chat_id == Chat.id,
                Message.user_id == owner_id,
                func.lower(Message.search_text).like(pattern, escape=LIKE_ESCAPE),
            )
        )
        statement = statement.where(
            or_(func.lower(Chat.title).like(pattern, escape=LIKE_ESCAPE), in_messages)
        )
    paged, finish = paginate(
        statement,
        sort=CHATS_BY_ACTIVITY,
        id_column=Chat.id,
        cursor=cursor,
        limit=limit,
        codec=codec,
    )
    rows = (await session.execute(paged)).scalars().all()
    return finish(rows)


async def get_message(
    session: AsyncSession, owner_id: uuid.UUID, chat_id: uuid.UUID, message_id: uuid.UUID
) -> Message | None:
    """One message of one of the owner's chats, or None."""
    result = await session.execute(
        readable_messages(owner_id, chat_id).where(Message.id == message_id)
    )
    return result.scalar_one_or_none()


async def path_to(
    session: AsyncSession,
    owner_id: uuid.UUID,
    chat_id: uuid.UUID,
    leaf_id: uuid.UUID,
    *,
    limit: int | None,
) -> tuple[list[Message], uuid.UUID | None]:
    """The path from the root down to `leaf_id`, oldest first, walking up at most `limit` steps.

    The walk is a recursive query over the primary key, so its cost grows with `limit`, not with
    the size of the chat.

    Returns:
        The messages (up to `limit`, ending at the leaf), and the id of the message just before
        the first one returned when the path goes on towards the root (else None).
    """
    scope = readable_messages(owner_id, chat_id).subquery()
    start = select(scope.c.id, scope.c.parent_id, literal(0).label("depth")).where(
        scope.c.id == leaf_id
    )
    walk = start.cte("path", recursive=True)
    step = select(scope.c.id, scope.c.parent_id, (walk.c.depth + 1).label("depth")).join(
        walk, scope.c.id == walk.c.parent_id
    )
    if limit is not None:
        step = step.where(walk.c.depth < limit)
    walk = walk.union_all(step)
    statement = (
        select(Message, walk.c.depth)
        .join(walk, Message.id == walk.c.id)
        .order_by(walk.c.depth.desc())
    )
    rows = (await session.execute(statement)).all()
    messages = [row[0] for row in rows]
    if limit is not None and len(messages) > limit:
        # One more than asked: that one is where the next page (towards the root) starts.
        return messages[1:], messages[0].id
    return messages, None


async def children_of(
    session: AsyncSession, chat_id: uuid.UUID, parent_ids: Sequence[uuid.UUID | None]
) -> dict[uuid.UUID | None, list[uuid.UUID]]:
    """The ids of the children of each parent (None: the chat's roots), oldest first."""
    wanted = [parent for parent in parent_ids if parent is not None]
    conditions: list[Any] = []
    if wanted:
        conditions.append(Message.parent_id.in_(wanted))
    if any(parent is None for parent in parent_ids):
        conditions.append(Message.parent_id.is_(None))
    if not conditions:
        return {}
    statement = (
        select(Message.id, Message.parent_id)
        .where(Message.chat_id == chat_id, or_(*conditions))
        .order_by(Message.created_at, Message.id)
    )
    children: dict[uuid.UUID | None, list[uuid.UUID]] = {}
    for message_id, parent_id in (await session.execute(statement)).all():
        children.setdefault(parent_id, []).append(message_id)
    return children


async def latest_leaf_under(
    session: AsyncSession, chat_id: uuid.UUID, message_id: uuid.UUID
) -> uuid.UUID:
    """The newest descendant leaf of `message_id` (itself when it has no children).

    Used to move the chat's current leaf when the client switches to another branch.
    """
    current = message_id
    while True:
        child = await session.scalar(
            select(Message.id)
            .where(Message.chat_id == chat_id, Message.parent_id == current)
            .order_by(Message.created_at.desc(), Message.id.desc())
            .limit(1)
        )
        if child is None:
            return current
        current = child


async def messages_by_id(
    session: AsyncSession,
    owner_id: uuid.UUID,
    chat_id: uuid.UUID,
    message_ids: Sequence[uuid.UUID],
) -> dict[uuid.UUID, Message]:
    """These messages of one of the owner's chats, by id, read afresh: loaded objects are
    refreshed from their rows (a turn's own sessions wrote to them since)."""
    result = await session.execute(
        readable_messages(owner_id, chat_id)
        .where(Message.id.in_(message_ids))
        .execution_options(populate_existing=True)
    )
    return {message.id: message for message in result.scalars()}
