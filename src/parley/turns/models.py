"""Idempotency records: a send or regenerate retried with the same `Idempotency-Key` answers with
the turn the first attempt started, instead of starting (and billing) a second one."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from parley.core.db import Base, IdTimestampMixin

IDEMPOTENCY_WINDOW = timedelta(hours=24)


class IdempotencyRecord(IdTimestampMixin, Base):
    """The turn started under one user's idempotency key (kept 24 hours)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_id_key"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    chat_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("chats.id", ondelete="CASCADE"), index=True
    )
    user_message_id: Mapped[uuid.UUID]
    assistant_message_id: Mapped[uuid.UUID]
