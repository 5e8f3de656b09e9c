"""files and knowledge: files, knowledge bases, chunks; chats.knowledge_ids, title_reply_id

Revision ID: 0ae8112ed792
Revises: 7c3e1f0a9d25
Create Date: 2026-12-02 16:14:45.817829
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import parley.core.db

revision: str = "0ae8112ed792"
down_revision: str | None = "7c3e1f0a9d25"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Each database's keyword index over the chunks comes last: SQLite's FTS5 table
    # knowledge_chunks_fts; PostgreSQL's stored tsvector column search_vector and its GIN index.
    op.create_table(
        "files",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("media_type", sa.String(length=100), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Double(), nullable=False),
        sa.Column("error_code", sa.String(length=40), nullable=True),
        sa.Column("error_message", sa.String(length=500), nullable=True),
        sa.Column("pages", sa.Integer(), nullable=True),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("embedding_model", sa.String(length=200), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", parley.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", parley.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('queued', 'processing', 'ready', 'failed')",
            name=op.f("ck_files_file_status"),
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_files_owner_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_files")),
    )
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.create_index(
            "ix_files_owner_id_created_at_id", ["owner_id", "created_at", "id"], unique=False
        )
        batch_op.create_index("ix_files_owner_id_sha256", ["owner_id", "sha256"], unique=False)

    op.create_table(
        "knowledge_bases",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", parley.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", parley.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_knowledge_bases_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_bases")),
    )
    with op.batch_alter_table("knowledge_bases", schema=None) as batch_op:
        batch_op.create_index(
            "ix_knowledge_bases_owner_id_created_at_id",
            ["owner_id", "created_at", "id"],
            unique=False,
        )

    op.create_table(
        "storage_usage",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("bytes_used", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", parley.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_storage_usage_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("owner_id", name=op.f("pk_storage_usage")),
    )
    op.create_table(
        "knowledge_base_files",
        sa.Column("knowledge_id", sa.Uuid(), nullable=False),
        sa.Column("file_id", sa.Uuid(), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", parley.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["files.id"],
            name=op.f("fk_knowledge_base_files_file_id_files"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["knowledge_id"],
            ["knowledge_bases.id"],
            name=op.f("fk_knowledge_base_files_knowledge_id_knowledge_bases"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_knowledge_base_files_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("knowledge_id", "file_id", name=op.f("pk_knowledge_base_files")),
    )
    with op.batch_alter_table("knowledge_base_files", schema=None) as batch_op:
        batch_op.create_index("ix_knowledge_base_files_file_id", ["file_id"], unique=False)

    op.create_table(
        "knowledge_chunks",
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("file_id", sa.Uuid(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("page", sa.Integer(), nullable=True),
        sa.Column("heading", sa.String(length=500), nullable=True),
        sa.Column("start_offset", sa.Integer(), nullable=False),
        sa.Column("end_offset", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("embedding_model", sa.String(length=200), nullable=False),
        sa.Column("dimension", sa.Integer(), nullable=False),
        sa.Column("embedding", sa.LargeBinary(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", parley.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", parley.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["file_id"],
            ["files.id"],
            name=op.f("fk_knowledge_chunks_file_id_files"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["users.id"],
            name=op.f("fk_knowledge_chunks_owner_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_chunks")),
    )
    with op.batch_alter_table("knowledge_chunks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_knowledge_chunks_file_id_ordinal", ["file_id", "ordinal"], unique=False
        )
        batch_op.create_index(
            "ix_knowledge_chunks_owner_id_embedding_model",
            ["owner_id", "embedding_model"],
            unique=False,
        )

    with op.batch_alter_table("chats", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("knowledge_ids", sa.JSON(), server_default=sa.text("'[]'"), nullable=False)
        )
        batch_op.add_column(sa.Column("title_reply_id", sa.Uuid(), nullable=True))
        batch_op.create_index(
            "ix_chats_title_reply_id",
            ["title_reply_id"],
            unique=False,
            sqlite_where=sa.text("title_reply_id IS NOT NULL"),
            postgresql_where=sa.text("title_reply_id IS NOT NULL"),
        )

    if op.get_bind().dialect.name == "sqlite":
        # The owner is an indexed column, so a match is scoped to one user inside the index.
        op.execute(
            "CREATE VIRTUAL TABLE knowledge_chunks_fts USING fts5("
            "text, owner, chunk_id UNINDEXED, tokenize = 'porter unicode61 remove_diacritics 2')"
        )
    else:
        # Stored, so that ranking reads each chunk's tsvector instead of parsing its text again.
        op.execute(
            "ALTER TABLE knowledge_chunks ADD COLUMN search_vector tsvector "
            "GENERATED ALWAYS AS (to_tsvector('english', text)) STORED"
        )
        op.create_index(
            "ix_knowledge_chunks_search_vector",
            "knowledge_chunks",
            ["search_vector"],
            postgresql_using="gin",
        )


def downgrade() -> None:
    with op.batch_alter_table("chats", schema=None) as batch_op:
        batch_op.drop_index("ix_chats_title_reply_id")
        batch_op.drop_column("title_reply_id")
        batch_op.drop_column("knowledge_ids")

    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TABLE knowledge_chunks_fts")
    else:
        op.drop_index("ix_knowledge_chunks_search_vector", table_name="knowledge_chunks")
        op.drop_column("knowledge_chunks", "search_vector")

    with op.batch_alter_table("knowledge_chunks", schema=None) as batch_op:
        batch_op.drop_index("ix_knowledge_chunks_owner_id_embedding_model")
        batch_op.drop_index("ix_knowledge_chunks_file_id_ordinal")

    op.drop_table("knowledge_chunks")
    with op.batch_alter_table("knowledge_base_files", schema=None) as batch_op:
        batch_op.drop_index("ix_knowledge_base_files_file_id")

    op.drop_table("knowledge_base_files")
    op.drop_table("storage_usage")
    with op.batch_alter_table("knowledge_bases", schema=None) as batch_op:
        batch_op.drop_index("ix_knowledge_bases_owner_id_created_at_id")

    op.drop_table("knowledge_bases")
    with op.batch_alter_table("files", schema=None) as batch_op:
        batch_op.drop_index("ix_files_owner_id_sha256")
        batch_op.drop_index("ix_files_owner_id_created_at_id")

    op.drop_table("files")
