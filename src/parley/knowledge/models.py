"""Knowledge tables: `knowledge_bases` (a user's named collections of files),
`knowledge_base_files` (which files a base holds) and `knowledge_chunks` (the passages a file was
cut into, each with its place in the file, its text and its embedding).

Every row carries its owner, and every index a search or a list uses starts with it, so a query
reads one user's rows only. A chunk's embedding is stored as little-endian float32 bytes beside
the model that made it and its dimension: a search only compares vectors of one model. Keyword
search has an index of each database's own: on SQLite the FTS5 table `knowledge_chunks_fts`
(created by the migration, with the owner as an indexed column, so a match is scoped inside the
index), on PostgreSQL the generated column `search_vector` (the text's `tsvector`, stored) and
its GIN index, both added by the migration and read by `parley.knowledge.repository` only.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from parley.core.db import Base, IdTimestampMixin, utcnow

NAME_MAX_CHARS = 200
DESCRIPTION_MAX_CHARS = 2000
HEADING_MAX_CHARS = 500
# PostgreSQL's text search configuration for chunks (stems English; other words are kept whole).
TEXT_SEARCH_CONFIG = "english"


class KnowledgeBase(IdTimestampMixin, Base):
    """A user's named collection of files that chats can search."""

    __tablename__ = "knowledge_bases"
    __table_args__ = (
        Index("ix_knowledge_bases_owner_id_created_at_id", "owner_id", "created_at", "id"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(NAME_MAX_CHARS))
    description: Mapped[str | None] = mapped_column(Text)


class KnowledgeBaseFile(Base):
    """One file in one knowledge base (a value: keyed by both, no id of its own)."""

    __tablename__ = "knowledge_base_files"
    __table_args__ = (Index("ix_knowledge_base_files_file_id", "file_id"),)

    knowledge_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("knowledge_bases.id", ondelete="CASCADE"), primary_key=True
    )
    file_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("files.id", ondelete="CASCADE"), primary_key=True
    )
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class KnowledgeChunk(IdTimestampMixin, Base):
    """A passage of a file: its text, where it is, and its embedding."""

    __tablename__ = "knowledge_chunks"
    __table_args__ = (
        Index("ix_knowledge_chunks_owner_id_embedding_model", "owner_id", "embedding_model"),
        Index("ix_knowledge_chunks_file_id_ordinal", "file_id", "ordinal"),
    )

    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    file_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"))
    ordinal: Mapped[int]
    page: Mapped[int | None]
    heading: Mapped[str | None] = mapped_column(String(HEADING_MAX_CHARS))
    start_offset: Mapped[int]
    end_offset: Mapped[int]
    text: Mapped[str] = mapped_column(Text)
    embedding_model: Mapped[str] = mapped_column(String(200))
    dimension: Mapped[int]
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
