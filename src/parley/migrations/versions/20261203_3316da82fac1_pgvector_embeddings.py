"""pgvector: knowledge_chunks.embedding_vec and its HNSW indexes, where the server has pgvector

Revision ID: 3316da82fac1
Revises: 0ae8112ed792
Create Date: 2026-12-03 10:20:00.000000
"""

import logging
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from pgvector.sqlalchemy import VECTOR
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from parley.knowledge.vectors import (
    MISSING_VECTORS_INDEX,
    VECTOR_COLUMN,
    create_index,
    pgvector_usable,
)

revision: str = "3316da82fac1"
down_revision: str | None = "0ae8112ed792"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger("alembic.runtime.migration")
BACKFILL_BATCH = 1000
_INSTALLED = sa.text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")


def _pgvector_version(bind: Connection) -> str | None:
    """The installed pgvector's version, after creating the extension where the server has it
    and this user may (None: not installed, and the exact scan stays)."""
    version = bind.execute(_INSTALLED).scalar_one_or_none()
    if version is not None:
        return str(version)
    available = bind.execute(
        sa.text("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
    ).scalar_one_or_none()
    if available is None:
        return None
    try:
        with bind.begin_nested():  # a refusal rolls back to here, not the whole migration
            bind.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
    except DBAPIError as exc:
        logger.warning(
            "pgvector is on the server, but this user may not create it (%s): knowledge search "
            "keeps the exact scan",
            exc.orig,
        )
        return None
    return str(bind.execute(_INSTALLED).scalar_one())


def _backfill(bind: Connection) -> None:
    """Copy the existing chunks' float32 bytes into the new column, in batches."""
    import numpy as np

    read = sa.text(
        "SELECT id, embedding FROM knowledge_chunks WHERE embedding_vec IS NULL "
        "AND length(embedding) = dimension * 4 AND dimension > 0 AND id > :after "
        "ORDER BY id LIMIT :batch"
    ).bindparams(sa.bindparam("after", type_=sa.Uuid()))
    write = sa.text(
        "UPDATE knowledge_chunks SET embedding_vec = :vector WHERE id = :id"
    ).bindparams(sa.bindparam("vector", type_=VECTOR()), sa.bindparam("id", type_=sa.Uuid()))
    after = uuid.UUID(int=0)
    while True:
        rows = bind.execute(read, {"after": after, "batch": BACKFILL_BATCH}).all()
        if not rows:
            return
        bind.execute(
            write,
            [{"id": row.id, "vector": np.frombuffer(row.embedding, dtype="<f4")} for row in rows],
        )
        after = rows[-1].id


def upgrade() -> None:
    # PostgreSQL only, and only where the server has pgvector: otherwise nothing (the exact scan).
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    version = _pgvector_version(bind)
    if version is None:
        return
    # Untyped: each embedding model's vectors have their own length (see parley.knowledge.vectors).
    op.execute(f"ALTER TABLE knowledge_chunks ADD COLUMN IF NOT EXISTS {VECTOR_COLUMN} vector")
    _backfill(bind)
    # Chunks still without one (written meanwhile by a process that did not know the column):
    # the reembed sweep fills them, found through this index, empty otherwise.
    op.execute(
        f"CREATE INDEX IF NOT EXISTS {MISSING_VECTORS_INDEX} ON knowledge_chunks (id) "
        f"WHERE {VECTOR_COLUMN} IS NULL"
    )
    if not pgvector_usable(version):
        return  # too old to search with (the column is kept, filled): the exact scan stays
    pairs = bind.execute(
        sa.text("SELECT DISTINCT embedding_model, dimension FROM knowledge_chunks")
    ).all()
    for model_id, dimension in pairs:
        create_index(bind, str(model_id), int(dimension))


def downgrade() -> None:
    # The column's HNSW indexes go with it; the extension stays (other tables may use it).
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(f"ALTER TABLE knowledge_chunks DROP COLUMN IF EXISTS {VECTOR_COLUMN}")
