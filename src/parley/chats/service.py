"""Chat use cases: create, list, read, update, soft delete, and reading the message tree.

Sending a message and generating the reply span several domains and live in
`parley.turns.service`; this module owns the chat and tree rules they rely on.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from parley.accounts.models import User
from parley.chats import repository
from parley.chats.models import Chat, Message
from parley.chats.schemas import MessageError, MessagePublic, Usage
from parley.core.db import utcnow
from parley.core.errors import NotFound
from parley.core.pagination import CursorCodec
from parley.core.telemetry import traced

CHAT_NOT_FOUND = "No such chat."
MESSAGE_NOT_FOUND = "No such message in this chat."


def message_public(message: Message, sibling_ids: Sequence[uuid.UUID]) -> MessagePublic:
    """The contract's view of a stored message."""
    usage = None
    # A reply in progress has no usage yet (its row keeps the tokens so far, for the sweep).
    if message.status != "streaming" and (
        message.input_tokens is not None or message.output_tokens is not None
    ):
        usage = Usage(
            input_tokens=message.input_tokens or 0,
            output_tokens=message.output_tokens or 0,
            cost_usd=float(message.cost_usd or Decimal(0)),
            time_to_first_token_ms=message.time_to_first_token_ms,
            duration_ms=message.duration_ms,
        )
    error = None
    if message.error_code:
        error = MessageError(code=message.error_code, message=message.error_message or "")
    return MessagePublic.model_validate(
        {
            "id": message.id,
            "chat_id": message.chat_id,
            "parent_id": message.parent_id,
            "role": message.role,
            "parts": message.parts,
            "status": message.status,
            "model_id": message.model_id,
            "usage": usage,
            "error": error,
            "sibling_ids": list(sibling_ids) or [message.id],
            "created_at": message.created_at,
        }
    )


class ChatService:
    """A user's chats and their message trees, over one database session."""

    def __init__(self, session: AsyncSession, codec: CursorCodec) -> None:
        self.session = session
        self.codec = codec

    async def get(self, owner: User, chat_id: uuid.UUID) -> Chat:
        """One of the owner's chats.

        Raises:
            NotFound: no such chat, deleted, or another user's.
        """
        chat = await repository.get_chat(self.session, owner.id, chat_id)
        if chat is None:
            raise NotFound(CHAT_NOT_FOUND)
        return chat

    @traced(name="chats.create")
    async def create(
        self,
        owner: User,
        *,
        title: str | None,
        model_id: str | None,
        system_prompt: str | None,
    ) -> Chat:
        """A new, empty chat. `model_id` must already be checked against the catalog."""
        chat = Chat(user_id=owner.id, title=title, model_id=model_id, system_prompt=system_prompt)
        self.session.add(chat)
        await self.session.commit()
        return chat

    @traced(name="chats.list")
    async def list_chats(
        self,
        owner: User,
        *,
        q: str | None,
        archived: bool | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[Chat], str | None]:
        """A page of the owner's chats, newest activity first."""
        return await repository.list_chats(
            self.session,
            owner.id,
            q=q,
            archived=archived,
            codec=self.codec,
            cursor=cursor,
            limit=limit,
        )

    @traced(name="chats.update")
    async def update(self, owner: User, chat_id: uuid.UUID, changes: dict[str, Any]) -> Chat:
        """Rename, archive, change the model or system prompt, or switch branches.

        Args:
            changes: only the fields the request set; `model_id` already checked.
        """
        chat = await self.get(owner, chat_id)
        for field in ("title", "model_id", "system_prompt"):
            if field in changes:
                setattr(chat, field, changes[field])
        if changes.get("archived") is not None:
            chat.archived = changes["archived"]
        if changes.get("current_leaf_id") is not None:
            target = await repository.get_message(
                self.session, owner.id, chat.id, changes["current_leaf_id"]
            )
            if target is None:
                raise NotFound(MESSAGE_NOT_FOUND)
            chat.current_leaf_id = await repository.latest_leaf_under(
                self.session, chat.id, target.id
            )
        await self.session.commit()
        return chat

    @traced(name="chats.delete")
    async def delete(self, owner: User, chat_id: uuid.UUID) -> None:
        """Soft-delete a chat: it is gone from every route afterwards."""
        chat = await self.get(owner, chat_id)
        chat.deleted_at = utcnow()
        await self.session.commit()

    async def public_messages(
        self, chat_id: uuid.UUID, messages: Sequence[Message]
    ) -> list[MessagePublic]:
        """Messages with their sibling ids, in the given order."""
        siblings = await repository.children_of(
            self.session, chat_id, list({message.parent_id for message in messages})
        )
        return [
            message_public(message, siblings.get(message.parent_id, [])) for message in messages
        ]

    @traced(name="chats.messages")
    async def messages(
        self,
        owner: User,
        chat_id: uuid.UUID,
        *,
        leaf_id: uuid.UUID | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[MessagePublic], str | None]:
        """A page of the path from the root to `leaf_id` (default: the current leaf).

        The first page ends at the leaf; `next_cursor` continues towards the root. Each page is
        oldest first.

        Raises:
            NotFound: no such chat, or `leaf_id` is not one of its messages.
        """
        chat = await self.get(owner, chat_id)
        if cursor:
            _, start = self.codec.decode(repository.PATH_CURSOR, cursor)
        else:
            start_or_none = leaf_id or chat.current_leaf_id
            if start_or_none is None:
                return [], None
            start = start_or_none
        path, before = await repository.path_to(self.session, owner.id, chat.id, start, limit=limit)
        if not path:  # the leaf or cursor names no message of this chat
            raise NotFound(MESSAGE_NOT_FOUND)
        next_cursor = (
            self.codec.encode(repository.PATH_CURSOR, None, before) if before is not None else None
        )
        return await self.public_messages(chat.id, path), next_cursor
