"""Chat use cases: create, list, read, update, soft delete, and reading the message tree.

Sending a message and generating the reply span several domains and live in
`parley.turns.service`; this module owns the chat and tree rules they rely on, and the reads and
writes of a turn's start (its branch, its two messages, the chat's reply slot) on the turn's
request session. A reply's later saves, on the turn's own sessions, are in `parley.chats.replies`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from parley.accounts.authentication import Owner
from parley.chats import message_rows, repository
from parley.chats.events import CHAT_CREATED, CHAT_DELETED, CHAT_UPDATED, add_chat_event
from parley.chats.models import Chat, Message
from parley.chats.schemas import MessageError, MessagePublic, Usage
from parley.core.db import utcnow
from parley.core.errors import NotFound
from parley.core.pagination import CursorCodec
from parley.core.telemetry import traced
from parley.knowledge import repository as knowledge_repository
from parley.llm.service import LLMService

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

    def __init__(
        self, session: AsyncSession, codec: CursorCodec, llm: LLMService | None = None
    ) -> None:
        self.session = session
        self.codec = codec
        self.llm = llm  # the model catalog, to check a chat's model (creating, updating)

    async def _catalog_model(self, model_id: str) -> str:
        """The id of the enabled catalog model `model_id` names.

        Raises:
            ValidationFailed: it is not an enabled catalog model.
        """
        if self.llm is None:
            raise RuntimeError("this ChatService was built without the model catalog")
        return (await self.llm.resolve(model_id)).id

    async def get(self, owner: Owner, chat_id: uuid.UUID) -> Chat:
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
        owner: Owner,
        *,
        title: str | None,
        model_id: str | None,
        system_prompt: str | None,
        knowledge_ids: Sequence[uuid.UUID] = (),
    ) -> Chat:
        """A new, empty chat; `model_id` must be an enabled catalog model (None: the default),
        `knowledge_ids` the caller's knowledge bases."""
        if model_id is not None:
            model_id = await self._catalog_model(model_id)
        chat = Chat(
            user_id=owner.id,
            title=title,
            model_id=model_id,
            system_prompt=system_prompt,
            knowledge_ids=await self._knowledge_ids(owner, knowledge_ids),
        )
        self.session.add(chat)
        await self.session.flush()
        await add_chat_event(self.session, CHAT_CREATED, chat)
        await self.session.commit()
        return chat

    async def _knowledge_ids(self, owner: Owner, knowledge_ids: Sequence[uuid.UUID]) -> list[str]:
        """The ids as stored, once each is known to be one of the owner's knowledge bases.

        Raises:
            NotFound: one is not.
        """
        wanted = list(dict.fromkeys(knowledge_ids))
        found = await knowledge_repository.get_bases(self.session, owner.id, wanted)
        if len(found) != len(wanted):
            raise NotFound("No such knowledge base.")
        return [str(knowledge_id) for knowledge_id in wanted]

    @traced(name="chats.list")
    async def list_chats(
        self,
        owner: Owner,
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
    async def update(self, owner: Owner, chat_id: uuid.UUID, changes: dict[str, Any]) -> Chat:
        """Rename, archive, change the model or system prompt, or switch branches.

        Args:
            changes: only the fields the request set; a `model_id` must be an enabled catalog
                model.
        """
        if changes.get("model_id") is not None:
            changes = {**changes, "model_id": await self._catalog_model(changes["model_id"])}
        chat = await self.get(owner, chat_id)
        for field in ("title", "model_id", "system_prompt"):
            if field in changes:
                setattr(chat, field, changes[field])
        if changes.get("knowledge_ids") is not None:
            chat.knowledge_ids = await self._knowledge_ids(owner, changes["knowledge_ids"])
        if "title" in changes:  # the user's own title: no generated one replaces it
            chat.title_generated = False
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
        await self.session.flush()
        await add_chat_event(self.session, CHAT_UPDATED, chat)
        await self.session.commit()
        return chat

    @traced(name="chats.delete")
    async def delete(self, owner: Owner, chat_id: uuid.UUID) -> None:
        """Soft-delete a chat: it is gone from every route afterwards."""
        chat = await self.get(owner, chat_id)
        chat.deleted_at = utcnow()
        await self.session.flush()
        await add_chat_event(self.session, CHAT_DELETED, chat)
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
        owner: Owner,
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

    # -- a turn's start and result (`parley.turns.service`), on its request session ---------
    # These take the owner's id, not the owner: a rolled-back race would expire a loaded row.

    async def get_message(
        self, owner_id: uuid.UUID, chat_id: uuid.UUID, message_id: uuid.UUID
    ) -> Message | None:
        """One message of one of the owner's chats, or None."""
        return await repository.get_message(self.session, owner_id, chat_id, message_id)

    async def branch_to(
        self, owner_id: uuid.UUID, chat_id: uuid.UUID, leaf_id: uuid.UUID, *, limit: int
    ) -> list[Message]:
        """The branch from the root down to `leaf_id`, oldest first: its last `limit` messages."""
        path, _ = await repository.path_to(self.session, owner_id, chat_id, leaf_id, limit=limit)
        return path

    def new_user_message(
        self,
        owner_id: uuid.UUID,
        chat_id: uuid.UUID,
        *,
        parent_id: uuid.UUID | None,
        parts: list[dict[str, Any]],
    ) -> Message:
        """A new user message, not written yet (`add_turn_messages` writes it)."""
        return message_rows.new_user_message(
            chat_id=chat_id, owner_id=owner_id, parent_id=parent_id, parts=parts
        )

    async def add_turn_messages(
        self,
        user_message: Message,
        reply_id: uuid.UUID,
        *,
        new_user_message: bool,
        model_id: str,
        prompt_tokens: int,
    ) -> None:
        """Write a turn's reply to `user_message`, `streaming`, billed `prompt_tokens` so far, and
        the user message itself if it is `new_user_message` (not stored yet). Flushed, not
        committed: the turn's start commits them with its other rows."""
        if new_user_message:
            message_rows.add_message(self.session, user_message)
        reply = message_rows.new_reply(
            reply_id, user_message, model_id=model_id, prompt_tokens=prompt_tokens
        )
        message_rows.add_message(self.session, reply)
        await self.session.flush()

    async def claim_reply_slot(self, chat_id: uuid.UUID, reply_id: uuid.UUID) -> bool:
        """Make `reply_id` the chat's reply in progress and its current leaf; False when the chat
        already has one (of two concurrent claims, exactly one wins)."""
        return await message_rows.claim_reply_slot(self.session, chat_id, reply_id)

    async def turn_messages(
        self, owner_id: uuid.UUID, chat_id: uuid.UUID, message_ids: Sequence[uuid.UUID]
    ) -> list[MessagePublic]:
        """These messages as they are stored now (a turn's own sessions wrote them since they
        were loaded), in the given order.

        Raises:
            NotFound: one of them is not a message of the owner's chat.
        """
        found = await repository.messages_by_id(self.session, owner_id, chat_id, message_ids)
        if len(found) != len(message_ids):
            raise NotFound(MESSAGE_NOT_FOUND)
        return await self.public_messages(chat_id, [found[id_] for id_ in message_ids])
