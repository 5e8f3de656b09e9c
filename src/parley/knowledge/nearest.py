"""The chunks nearest to a query's embedding, by the backend the database has
(`parley.knowledge.vectors`): pgvector's HNSW index, sqlite-vec's distances in SQL, or an exact
scan in numpy.

Every backend reads the same rows: the owner's chunks of ready files (among `file_ids` when
given) embedded by the current model at its dimension, so vectors of two models are never
compared. A hit's score is the cosine similarity (1 - the cosine distance; the vectors are unit
length, so the exact scan's dot product is the same number).

With pgvector the owner, file and status filters apply during the index scan: with
`hnsw.iterative_scan = relaxed_order` the scan goes on past `hnsw.ef_search` candidates until it
has `limit` rows that pass (or has seen `hnsw.max_scan_tuples`), and the rows are sorted again
here. A search that still comes back short (the owner's chunks are few among many of other
users' or files', or there are fewer than `limit`) runs again without the index, exactly, in SQL:
the planner then reads the owner's or the files' rows through their btree indexes. The model and
dimension are written into the SQL as literals, so the planner can match the index's predicate.
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pgvector.sqlalchemy import HALFVEC, VECTOR
from sqlalchemy import (
    Float,
    LargeBinary,
    Select,
    bindparam,
    cast,
    func,
    literal,
    literal_column,
    nulls_last,
    select,
    text,
)
from sqlalchemy.ext.asyncio import AsyncSession

from parley.files.models import READY, StoredFile
from parley.knowledge import repository
from parley.knowledge.models import KnowledgeChunk
from parley.knowledge.repository import ChunkHit
from parley.knowledge.vectors import (
    PGVECTOR,
    SQLITE_VEC,
    VECTOR_COLUMN,
    VectorBackend,
    index_type,
    vector_backend,
)

if TYPE_CHECKING:
    import numpy as np

# HNSW's candidate list while searching (pgvector's default is 40), at least the rows asked for.
# On bench.knowledge's clustered vectors, 100,000 a user, recall@50 against the exact scan rose
# from 0.72 at 100 to 0.87 at 400 and 0.86 to 0.93 at 800 (two samples of questions), for a
# vector_search of 37, 43 and 53 to 73 ms (about 20 of them the query's embedding) against the
# exact scan's 2.4 s: BENCHMARKS.md, "Search latency with pgvector".
EF_SEARCH = 800
MAX_EF_SEARCH = 1000  # pgvector's own bound


def nearest(
    query: np.ndarray, rows: Sequence[tuple[uuid.UUID, bytes]], dimension: int, limit: int
) -> list[ChunkHit]:
    """The `limit` rows whose vectors are closest to `query` (unit vectors: the dot product is
    the cosine), best first. Rows of another dimension are skipped."""
    import numpy as np

    usable = [(chunk_id, blob) for chunk_id, blob in rows if len(blob) == dimension * 4]
    if not usable:
        return []
    matrix = np.frombuffer(b"".join(blob for _, blob in usable), dtype="<f4").reshape(
        len(usable), dimension
    )
    scores = matrix @ query.astype(np.float32)
    count = min(limit, len(usable))
    best = np.argpartition(-scores, count - 1)[:count]
    best = best[np.argsort(-scores[best], kind="stable")]
    return [ChunkHit(usable[index][0], float(scores[index])) for index in best]


def _scoped(
    statement: Select[Any],
    owner_id: uuid.UUID,
    *,
    model_id: str,
    dimension: int,
    file_ids: Sequence[uuid.UUID] | None,
) -> Select[Any]:
    """The rows every backend reads (see the module docstring); the model and the dimension as
    literals in the SQL."""
    statement = statement.join(StoredFile, StoredFile.id == KnowledgeChunk.file_id).where(
        KnowledgeChunk.owner_id == owner_id,
        KnowledgeChunk.embedding_model == literal(model_id, literal_execute=True),
        KnowledgeChunk.dimension == literal(dimension, literal_execute=True),
        StoredFile.status == READY,
    )
    if file_ids is not None:
        statement = statement.where(KnowledgeChunk.file_id.in_(list(file_ids)))
    return statement


def pgvector_statement(
    owner_id: uuid.UUID,
    query: np.ndarray,
    *,
    model_id: str,
    dimension: int,
    file_ids: Sequence[uuid.UUID] | None,
    limit: int,
    indexed: bool = True,
) -> Select[Any]:
    """The owner's `limit` nearest chunks by cosine distance (`id`, `distance`), nearest first:
    over the model's HNSW index (`indexed`: the cast to the index's type and length, as its
    expression has it), or exactly (no cast the index could serve)."""
    kind = index_type(dimension) if indexed else None
    vector_type: VECTOR | HALFVEC
    if kind == "halfvec":
        vector_type = HALFVEC(dimension)
    else:
        vector_type = VECTOR(dimension) if kind == "vector" else VECTOR()
    stored = literal_column(f"knowledge_chunks.{VECTOR_COLUMN}", VECTOR())
    column = cast(stored, vector_type) if kind else stored
    distance = column.op("<=>", return_type=Float)(
        cast(bindparam("query_vector", query, type_=vector_type), vector_type)
    )
    statement = select(KnowledgeChunk.id, distance.label("distance")).order_by(distance)
    return _scoped(
        statement, owner_id, model_id=model_id, dimension=dimension, file_ids=file_ids
    ).limit(limit)


def sqlite_vec_statement(
    owner_id: uuid.UUID,
    query: np.ndarray,
    *,
    model_id: str,
    dimension: int,
    file_ids: Sequence[uuid.UUID] | None,
    limit: int,
) -> Select[Any]:
    """The owner's `limit` nearest chunks by sqlite-vec's cosine distance over the stored float32
    bytes (`id`, `distance`), nearest first; a row whose bytes are not `dimension` floats is left
    out before any distance is taken (sqlite-vec refuses vectors of two lengths)."""
    import numpy as np

    blob = np.ascontiguousarray(query, dtype="<f4").tobytes()
    distance = func.vec_distance_cosine(
        KnowledgeChunk.embedding, bindparam("query_vector", blob, type_=LargeBinary)
    ).label("distance")
    statement = (
        select(KnowledgeChunk.id, distance)
        .where(func.length(KnowledgeChunk.embedding) == dimension * 4)
        .order_by(nulls_last(distance))  # a zero vector's distance is NULL (NaN)
    )
    return _scoped(
        statement, owner_id, model_id=model_id, dimension=dimension, file_ids=file_ids
    ).limit(limit)


async def _hits(session: AsyncSession, statement: Select[Any]) -> list[ChunkHit]:
    rows = (await session.execute(statement)).all()
    found: list[tuple[float, uuid.UUID]] = [
        (float(row.distance), row.id)
        for row in rows
        if row.distance is not None and math.isfinite(row.distance)
    ]
    found.sort(key=lambda item: item[0])  # relaxed_order: nearly sorted already
    return [ChunkHit(chunk_id, 1.0 - distance) for distance, chunk_id in found]


async def _pgvector_nearest(
    session: AsyncSession,
    owner_id: uuid.UUID,
    query: np.ndarray,
    *,
    model_id: str,
    dimension: int,
    file_ids: Sequence[uuid.UUID] | None,
    limit: int,
) -> list[ChunkHit]:
    scope: dict[str, Any] = {"model_id": model_id, "dimension": dimension, "file_ids": file_ids}
    if index_type(dimension) is not None:
        # SET LOCAL, both in one trip: for this transaction only (a search's session reads,
        # then ends).
        ef_search = min(MAX_EF_SEARCH, max(EF_SEARCH, limit))
        await session.execute(
            text(
                "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), "
                "set_config('hnsw.ef_search', :ef_search, true)"
            ),
            {"ef_search": str(ef_search)},
        )
        hits = await _hits(session, pgvector_statement(owner_id, query, limit=limit, **scope))
        if len(hits) >= limit:
            return hits
    exact = pgvector_statement(owner_id, query, limit=limit, indexed=False, **scope)
    return await _hits(session, exact)


async def nearest_chunks(
    session: AsyncSession,
    owner_id: uuid.UUID,
    query: np.ndarray,
    *,
    model_id: str,
    dimension: int,
    file_ids: Sequence[uuid.UUID] | None,
    limit: int,
    backend: VectorBackend | None = None,
) -> list[ChunkHit]:
    """The owner's chunks nearest to `query` (an embedding by `model_id`, of `dimension`
    numbers), best first, by `backend` (default: the database's own, `vector_backend`)."""
    if (file_ids is not None and not file_ids) or query.shape != (dimension,) or limit < 1:
        return []
    backend = backend or await vector_backend(session)
    scope: dict[str, Any] = {"model_id": model_id, "dimension": dimension, "file_ids": file_ids}
    if backend == PGVECTOR:
        return await _pgvector_nearest(session, owner_id, query, limit=limit, **scope)
    if backend == SQLITE_VEC:
        return await _hits(session, sqlite_vec_statement(owner_id, query, limit=limit, **scope))
    rows = await repository.vectors_of(
        session, owner_id, embedding_model=model_id, file_ids=file_ids
    )
    return await asyncio.to_thread(nearest, query, rows, dimension, limit)
