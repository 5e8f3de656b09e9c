"""File tables: `files` (one row per upload, with its ingestion status) and `storage_usage` (the
bytes each user's uploads take, kept as a counter so that the quota holds under concurrent
uploads: a conditional `UPDATE` reserves an upload's bytes or refuses it, on SQLite and
PostgreSQL alike).

The bytes themselves are not in the database: they are stored once per user and content
(`sha256`) by `parley.files.storage`; two uploads of the same bytes are two rows and one blob.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from parley.core.db import Base, IdTimestampMixin, utcnow

FILENAME_MAX_CHARS = 255
ERROR_MESSAGE_MAX_CHARS = 500

QUEUED = "queued"
PROCESSING = "processing"
READY = "ready"
FAILED = "failed"
FILE_STATUSES = (QUEUED, PROCESSING, READY, FAILED)


class StoredFile(IdTimestampMixin, Base):
    """One uploaded file of one user."""

    __tablename__ = "files"
    __table_args__ = (
        Index("ix_files_owner_id_created_at_id", "owner_id", "created_at", "id"),
        Index("ix_files_owner_id_sha256", "owner_id", "sha256"),
        CheckConstraint(
            "status IN ('queued', 'processing', 'ready', 'failed')", name="file_status"
        ),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    filename: Mapped[str] = mapped_column(String(FILENAME_MAX_CHARS))
    media_type: Mapped[str] = mapped_column(String(100))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=QUEUED)
    progress: Mapped[float] = mapped_column(default=0.0)
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_message: Mapped[str | None] = mapped_column(String(ERROR_MESSAGE_MAX_CHARS))
    pages: Mapped[int | None]
    chunks: Mapped[int] = mapped_column(default=0)
    # The embedding model of the file's chunks (None until it is ready).
    embedding_model: Mapped[str | None] = mapped_column(String(200))

    @property
    def error(self) -> dict[str, str] | None:
        """Why it failed, as the API shows it."""
        if self.error_code is None:
            return None
        return {"code": self.error_code, "message": self.error_message or ""}


class StorageUsage(Base):
    """How many bytes a user's files take (every upload counts, deduplicated or not)."""

    __tablename__ = "storage_usage"

    owner_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    bytes_used: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
