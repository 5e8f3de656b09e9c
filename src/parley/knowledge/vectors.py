"""Which vector search backend serves a database, and the pgvector side's schema: its column and
its HNSW indexes (the queries are `parley.knowledge.nearest`'s).

- `pgvector`: PostgreSQL with the `vector` extension, 0.8 or later (iterative index scans), and
  the column `knowledge_chunks.embedding_vec`, an untyped `vector` that migration 3316da82fac1
  adds where the extension is available. Each chunk's embedding is stored there as well as in its
  float32 bytes, and an HNSW index per embedding model and dimension finds the nearest.
- `sqlite-vec`: SQLite with the extension loaded into its connections
  (`parley.core.sqlite_extensions`): the distances are computed exactly, in SQL.
- `exact`: anything else: the owner's vectors are read and compared in numpy.

A PostgreSQL database's backend is looked up once per engine and kept; SQLite's follows what its
connections loaded. Each process logs the one in use when it starts (`announce`).

An index is partial and over an expression, `... USING hnsw ((embedding_vec::vector(D))
vector_cosine_ops) WHERE embedding_model = 'M' AND dimension = D`, because one column holds every
model's vectors, each model's of its own length: the cast gives HNSW the fixed dimension it needs,
and the predicate keeps other models' vectors (and a model's of another length, after its
`dimensions` changed) out. HNSW indexes `vector` up to 2,000 dimensions; longer ones, up to 4,000,
are indexed as `halfvec` (half precision, for ranking only: the stored vectors stay whole); past
that there is no index and a search scans exactly, in SQL. The name comes from the model and the
dimension, so every process that creates the index (`ensure_index`, before writing a model's
vectors; the migration, for the chunks already there) means the same one, and an advisory lock
with `CREATE INDEX IF NOT EXISTS` makes concurrent creations harmless.
"""

from __future__ import annotations

import hashlib
import logging
import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from parley.core.sqlite_extensions import sqlite_vec_status

if TYPE_CHECKING:
    from parley.llm.embedding_catalog import EmbeddingEntry

logger = logging.getLogger(__name__)

VectorBackend = Literal["pgvector", "sqlite-vec", "exact"]
PGVECTOR: VectorBackend = "pgvector"
SQLITE_VEC: VectorBackend = "sqlite-vec"
EXACT: VectorBackend = "exact"
BACKENDS: tuple[VectorBackend, ...] = (PGVECTOR, SQLITE_VEC, EXACT)

VECTOR_COLUMN = "embedding_vec"
# The chunks whose `embedding_vec` is still empty (a partial index the migration makes).
MISSING_VECTORS_INDEX = "ix_knowledge_chunks_missing_vectors"
# Iterative index scans (`hnsw.iterative_scan`), which filtered searches need, came in 0.8.0.
MIN_PGVECTOR_VERSION = (0, 8, 0)
VECTOR_INDEX_MAX_DIMENSIONS = 2000
HALFVEC_INDEX_MAX_DIMENSIONS = 4000
# How long creating an index waits for writers holding the table (it blocks new ones meanwhile).
INDEX_LOCK_TIMEOUT = "30s"
INSTALL_HINT = (
    "install pgvector on the server (the pgvector/pgvector image, or `apt install "
    "postgresql-NN-pgvector`) and migrate again"
)
REMIGRATE = "`parley migrate downgrade 0ae8112ed792` then `parley migrate`"

# One query for everything the choice depends on (to_regclass: NULL before the first migration).
_PG_PROBE = text(
    "SELECT to_regclass('knowledge_chunks') IS NOT NULL AS migrated, "
    "EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'vector') AS available, "
    "(SELECT extversion FROM pg_extension WHERE extname = 'vector') AS version, "
    "EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('knowledge_chunks') "
    "AND attname = :column AND NOT attisdropped) AS has_column"
).bindparams(column=VECTOR_COLUMN)


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """The backend in use and, in words, why (the start-up log line's)."""

    backend: VectorBackend
    detail: str


_PG_BACKENDS: weakref.WeakKeyDictionary[Engine, BackendInfo] = weakref.WeakKeyDictionary()
_ENSURED: weakref.WeakKeyDictionary[Engine, set[tuple[str, int]]] = weakref.WeakKeyDictionary()


def version_tuple(version: str) -> tuple[int, ...]:
    """`0.8.6` as (0, 8, 6) (a part's leading digits only: `0.9.0-dev` is (0, 9, 0))."""
    return tuple(int(match.group()) for match in re.finditer(r"^\d+|(?<=\.)\d+", version))


def pgvector_usable(version: str | None) -> bool:
    """Whether an installed pgvector of this version serves searches (0.8 or later)."""
    return version is not None and version_tuple(version) >= MIN_PGVECTOR_VERSION


def _postgresql_info(available: bool, version: str | None, has_column: bool) -> BackendInfo:
    if version is None:
        if available:
            return BackendInfo(
                EXACT,
                "exact scan in numpy: pgvector is on the server but not in this database (a "
                f"superuser may CREATE EXTENSION vector in it; then {REMIGRATE})",
            )
        return BackendInfo(
            EXACT, f"exact scan in numpy: PostgreSQL has no pgvector ({INSTALL_HINT})"
        )
    if not pgvector_usable(version):
        return BackendInfo(
            EXACT,
            f"exact scan in numpy: pgvector {version} is older than 0.8 (ALTER EXTENSION vector "
            "UPDATE, as its owner)",
        )
    if not has_column:
        return BackendInfo(
            EXACT,
            f"exact scan in numpy: pgvector {version} came after the migration that adds "
            f"knowledge_chunks.{VECTOR_COLUMN} ({REMIGRATE})",
        )
    return BackendInfo(PGVECTOR, f"pgvector {version}: HNSW indexes, cosine distance")


def _sync_engine(bind: AsyncSession | AsyncEngine) -> Engine:
    if isinstance(bind, AsyncEngine):
        return bind.sync_engine
    sync = bind.get_bind()
    return sync.engine if isinstance(sync, Connection) else sync


async def _probe(bind: AsyncSession | AsyncEngine, statement: Any) -> Any:
    if isinstance(bind, AsyncSession):
        return (await bind.execute(statement)).one()
    async with bind.connect() as connection:
        return (await connection.execute(statement)).one()


async def backend_info(bind: AsyncSession | AsyncEngine) -> BackendInfo:
    """The vector search backend of the database behind `bind` (see the module docstring).

    Raises:
        SQLAlchemyError: the database could not be asked (nothing is kept then).
    """
    engine = _sync_engine(bind)
    if engine.dialect.name == "sqlite":
        # A connection opened, so that its connect hook has tried to load the extension.
        if isinstance(bind, AsyncSession):
            await bind.connection()
        else:
            async with bind.connect():
                pass
        status = sqlite_vec_status(engine)
        if status.loaded:
            return BackendInfo(SQLITE_VEC, f"sqlite-vec {status.version}: exact distances in SQL")
        return BackendInfo(EXACT, f"exact scan in numpy: {status.reason}")
    if engine.dialect.name != "postgresql":
        return BackendInfo(EXACT, f"exact scan in numpy: {engine.dialect.name}")
    known = _PG_BACKENDS.get(engine)
    if known is not None:
        return known
    row = await _probe(bind, _PG_PROBE)
    info = _postgresql_info(bool(row.available), row.version, bool(row.has_column))
    if row.migrated:  # before the first migration there is nothing to know yet
        _PG_BACKENDS[engine] = info
    return info


async def vector_backend(bind: AsyncSession | AsyncEngine) -> VectorBackend:
    """`pgvector`, `sqlite-vec` or `exact`: the backend that serves vector search on the database
    behind a session or an engine (looked up once per PostgreSQL engine).

    Raises:
        SQLAlchemyError: the database could not be asked.
    """
    return (await backend_info(bind)).backend


# -- the HNSW indexes ---------------------------------------------------------------------------


def index_type(dimension: int) -> Literal["vector", "halfvec"] | None:
    """The type HNSW indexes vectors of this length as (None: too long for any index)."""
    if 0 < dimension <= VECTOR_INDEX_MAX_DIMENSIONS:
        return "vector"
    if VECTOR_INDEX_MAX_DIMENSIONS < dimension <= HALFVEC_INDEX_MAX_DIMENSIONS:
        return "halfvec"
    return None


def index_name(model_id: str, dimension: int) -> str:
    """The index of one model's vectors of one length: the same in every process."""
    digest = hashlib.sha256(f"{model_id}\0{dimension}".encode()).hexdigest()[:16]
    return f"ix_knowledge_chunks_hnsw_{dimension}_{digest}"


def sql_string(value: str) -> str:
    """`value` as a SQL string literal (standard-conforming strings: quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def index_ddl(model_id: str, dimension: int) -> str | None:
    """`CREATE INDEX IF NOT EXISTS` of the model's index (None past 4,000 dimensions)."""
    kind = index_type(dimension)
    if kind is None:
        return None
    return (
        f"CREATE INDEX IF NOT EXISTS {index_name(model_id, dimension)} ON knowledge_chunks "
        f"USING hnsw (({VECTOR_COLUMN}::{kind}({int(dimension)})) {kind}_cosine_ops) "
        f"WHERE embedding_model = {sql_string(model_id)} AND dimension = {int(dimension)}"
    )


def create_index(connection: Connection, model_id: str, dimension: int) -> bool:
    """Create the model's index in the connection's transaction unless it is there; whether it
    was created now. Concurrent callers wait for each other on an advisory lock, so the second
    finds the first's index; an invalid one (a concurrent build an operator left) is built anew.
    Synchronous: the migration's connection, or an async connection's `run_sync`."""
    ddl = index_ddl(model_id, dimension)
    if ddl is None:
        return False
    name = index_name(model_id, dimension)
    connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})
    valid = connection.execute(
        text("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(:name)"),
        {"name": name},
    ).scalar_one_or_none()
    if valid:
        return False
    if valid is False:
        connection.exec_driver_sql(f"DROP INDEX {name}")
    connection.exec_driver_sql(ddl)
    return True


async def ensure_index(engine: AsyncEngine, model_id: str, dimension: int) -> None:
    """With pgvector, make sure the model's index exists before its vectors are written (once per
    process and model). A failure (the table stayed locked past `INDEX_LOCK_TIMEOUT`) is logged
    and tried again next time: searches are exact without the index, only slower."""
    if await vector_backend(engine) != PGVECTOR or index_type(dimension) is None:
        return
    ensured = _ENSURED.setdefault(engine.sync_engine, set())
    if (model_id, dimension) in ensured:
        return
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{INDEX_LOCK_TIMEOUT}'")
            created = await connection.run_sync(create_index, model_id, dimension)
    except (SQLAlchemyError, OSError) as exc:
        logger.warning(
            "no HNSW index for %s (%d dimensions) yet: %s: %s",
            model_id,
            dimension,
            exc.__class__.__name__,
            getattr(exc, "orig", exc),
        )
        return
    ensured.add((model_id, dimension))
    if created:
        logger.info(
            "created the HNSW index %s for %s (%d dimensions)",
            index_name(model_id, dimension),
            model_id,
            dimension,
        )


async def announce(engine: AsyncEngine, entries: Sequence[EmbeddingEntry]) -> None:
    """Log the backend that serves knowledge search (at start-up) and, with pgvector, make sure
    the default embedding model's index exists when its dimension is known (a provider's model
    may only tell with its first answer: its first write makes the index then)."""
    try:
        info = await backend_info(engine)
    except (SQLAlchemyError, OSError) as exc:
        logger.warning(
            "knowledge vector search: the database did not say which backend it has (%s); the "
            "first search asks again",
            exc.__class__.__name__,
        )
        return
    logger.info("knowledge vector search: %s (%s)", info.backend, info.detail)
    if info.backend != PGVECTOR:
        return
    for entry in entries:
        if entry.is_default and entry.dimension:
            await ensure_index(engine, entry.id, entry.dimension)
