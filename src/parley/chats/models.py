"""Chat tables: chats (soft-deleted, newest activity first) and their messages, which form a tree
through `parent_id` (an edit or a regeneration starts a sibling branch)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, Integer, Numeric, String, Text, false, text
from sqlalchemy.orm import Mapped, mapped_column

from parley.core.db import Base, IdTimestampMixin


class Chat(IdTimestampMixin, Base):
    """A conversation. `updated_at` moves with every message, so it orders chats by activity."""

    __tablename__ = "chats"
    __table_args__ = (
        Index("ix_chats_user_id_archived_updated_at", "user_id", "archived", "updated_at", "id"),
        Index("ix_chats_user_id_updated_at", "user_id", "updated_at", "id"),
        Index(
            "ix_chats_title_reply_id",
            "title_reply_id",
            sqlite_where=text("title_reply_id IS NOT NULL"),
            postgresql_where=text("title_reply_id IS NOT NULL"),
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str | None] = mapped_column(String(200))
    # The title is Parley's (from the first message, then the `chat.title` job), not the user's:
    # only such a title is replaced by a generated one.
    title_generated: Mapped[bool] = mapped_column(default=False, server_default=false())
    # The first reply, once it completed: the chat waits for a title from its model
    # (`chat.title_sweep` queues the `chat.title` job and clears this).
    title_reply_id: Mapped[uuid.UUID | None]
    model_id: Mapped[str | None] = mapped_column(String(200))
    system_prompt: Mapped[str | None] = mapped_column(Text)
    archived: Mapped[bool] = mapped_column(default=False)
    # The knowledge bases the chat's assistant searches (ids, checked to be the owner's when set).
    knowledge_ids: Mapped[list[str]] = mapped_column(
        JSON, default=list, server_default=text("'[]'")
    )
    # No foreign keys: a chat and its messages would reference each other; the services keep
    # these valid. `active_message_id` is the reply in progress (at most one per chat), claimed
    # with a conditional update so that two workers cannot both start one.
    current_leaf_id: Mapped[uuid.UUID | None]
    active_message_id: Mapped[uuid.UUID | None]
    deleted_at: Mapped[datetime | None]


class Message(IdTimestampMixin, Base):
    """One message of a chat's tree.

    `parts` holds the contract's part objects (text, tool calls and results, reasoning);
    `search_text` is their plain text, kept for search. Usage and timings are set on assistant
    messages when the reply ends.
    """

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_chat_id_parent_id", "chat_id", "parent_id"),
        Index("ix_messages_status_updated_at", "status", "updated_at"),
    )

    chat_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("chats.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    parent_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messages.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))
    parts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    search_text: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="complete")
    model_id: Mapped[str | None] = mapped_column(String(200))
    input_tokens: Mapped[int | None] = mapped_column(Integer)
    output_tokens: Mapped[int | None] = mapped_column(Integer)
    cost_usd: Mapped[Decimal | None] = mapped_column(Numeric(14, 8))
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    time_to_first_token_ms: Mapped[int | None] = mapped_column(Integer)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
