"""Hybrid search over a user's chunks: keyword hits (SQLite FTS5's BM25, PostgreSQL's
`ts_rank_cd`) and vector hits (cosine similarity with the query's embedding among the owner's
ready files' chunks made by the current embedding model: pgvector's HNSW index, sqlite-vec in
SQL, or an exact scan, as `parley.knowledge.nearest` has it) fused by reciprocal rank.

Weighted reciprocal rank fusion scores a chunk `sum(weight / (RRF_K + rank))` over the lists it
is in, so a chunk that both searches rank well comes first, and neither search's raw scores (not
comparable with each other) matter; the keyword list weighs less (`KEYWORD_WEIGHT`). Each list
is `CANDIDATES_PER_LIST` long at least, so fusion has room to promote a chunk that one search
ranks low. Only one model's vectors are compared: chunks embedded
by an earlier `EMBEDDING_MODEL` still match by keyword until they are embedded again.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from parley.knowledge import repository
from parley.knowledge.nearest import nearest_chunks
from parley.knowledge.repository import ChunkHit
from parley.knowledge.vectors import VectorBackend
from parley.llm.embeddings import Embedder

if TYPE_CHECKING:
    import numpy as np

# numpy is imported where vectors are compared, not at start-up (the API server starts faster).
RRF_K = 60
# How much each list counts in the fusion. On the evaluation set (bench/knowledge_eval, SQLite,
# recall@5) the embedding model ranks better than keywords (0.90 against 0.68); fused, equal
# weights gave 0.82, keyword at 0.5 gave 0.85, at 0.3 0.86, at 0.2 0.89. At 0.3 a passage that
# only keyword search finds (a name, a code, a number) still rises among the vector hits.
KEYWORD_WEIGHT = 0.3
VECTOR_WEIGHT = 1.0
CANDIDATES_PER_LIST = 50
MAX_LIMIT = 50


@dataclass(frozen=True, slots=True)
class SearchHit:
    """A chunk a search found, with its file, and its fused score (higher is better)."""

    chunk_id: uuid.UUID
    file_id: uuid.UUID
    filename: str
    media_type: str
    page: int | None
    heading: str | None
    text: str
    start: int
    end: int
    score: float


def fuse(
    ranked_lists: Sequence[Sequence[ChunkHit]],
    *,
    weights: Sequence[float] | None = None,
    k: int = RRF_K,
) -> list[ChunkHit]:
    """Weighted reciprocal rank fusion: each chunk scored `sum(weight / (k + rank))` over the
    lists it is in, best first (ties by the chunk id, so the order is stable)."""
    scores: dict[uuid.UUID, float] = {}
    for index, hits in enumerate(ranked_lists):
        weight = 1.0 if weights is None else weights[index]
        for rank, hit in enumerate(hits, start=1):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + weight / (k + rank)
    ordered = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    return [ChunkHit(chunk_id, score) for chunk_id, score in ordered]


async def keyword_search(
    session: AsyncSession,
    owner_id: uuid.UUID,
    query: str,
    *,
    file_ids: Sequence[uuid.UUID] | None,
    limit: int,
) -> list[ChunkHit]:
    """Keyword hits only (for the evaluation's keyword-only figures, and the fusion)."""
    return await repository.keyword_hits(session, owner_id, query, file_ids=file_ids, limit=limit)


async def vector_search(
    session: AsyncSession,
    owner_id: uuid.UUID,
    query: str,
    embedder: Embedder,
    *,
    file_ids: Sequence[uuid.UUID] | None,
    limit: int,
    backend: VectorBackend | None = None,
) -> list[ChunkHit]:
    """Vector hits only: the chunks nearest to the query's embedding (by `backend`, default the
    database's own: the benchmark and the tests compare them)."""
    vector = await _query_vector(embedder, query)
    return await _nearest_of(
        session, owner_id, vector, embedder, file_ids=file_ids, limit=limit, backend=backend
    )


async def _query_vector(embedder: Embedder, query: str) -> np.ndarray | None:
    if not query.strip():
        return None
    vectors: np.ndarray = await embedder.embed([query], purpose="query")
    first: np.ndarray = vectors[0]
    return first


async def _nearest_of(
    session: AsyncSession,
    owner_id: uuid.UUID,
    vector: np.ndarray | None,
    embedder: Embedder,
    *,
    file_ids: Sequence[uuid.UUID] | None,
    limit: int,
    backend: VectorBackend | None,
) -> list[ChunkHit]:
    if vector is None:
        return []
    return await nearest_chunks(
        session,
        owner_id,
        vector,
        model_id=embedder.model_id,
        dimension=embedder.dimension,
        file_ids=file_ids,
        limit=limit,
        backend=backend,
    )


async def hybrid_search(
    session: AsyncSession,
    owner_id: uuid.UUID,
    query: str,
    embedder: Embedder,
    *,
    file_ids: Sequence[uuid.UUID] | None,
    limit: int,
    backend: VectorBackend | None = None,
) -> list[SearchHit]:
    """The owner's best chunks for `query`, keyword and vector hits fused, among `file_ids`
    (None: every ready file of the owner's); the vector hits by `backend` (default: the
    database's own)."""
    limit = max(1, min(limit, MAX_LIMIT))
    candidates = max(CANDIDATES_PER_LIST, limit * 4)
    # The query's embedding (a thread, or a provider's answer) while the keyword search runs.
    embedding = asyncio.ensure_future(_query_vector(embedder, query))
    try:
        keyword = await keyword_search(
            session, owner_id, query, file_ids=file_ids, limit=candidates
        )
        vector_of_query = await embedding
    finally:
        if not embedding.done():
            embedding.cancel()
    vector = await _nearest_of(
        session,
        owner_id,
        vector_of_query,
        embedder,
        file_ids=file_ids,
        limit=candidates,
        backend=backend,
    )
    fused = fuse([keyword, vector], weights=(KEYWORD_WEIGHT, VECTOR_WEIGHT))[:limit]
    found = await repository.chunks_with_files(session, owner_id, [hit.chunk_id for hit in fused])
    hits = []
    for hit in fused:
        if hit.chunk_id not in found:
            continue  # deleted since it was ranked
        chunk, stored = found[hit.chunk_id]
        hits.append(
            SearchHit(
                chunk_id=chunk.id,
                file_id=stored.id,
                filename=stored.filename,
                media_type=stored.media_type,
                page=chunk.page,
                heading=chunk.heading,
                text=chunk.text,
                start=chunk.start_offset,
                end=chunk.end_offset,
                score=hit.score,
            )
        )
    return hits
