"""Queries over knowledge bases, their files and the chunks of files. Never commits.

Every read starts from the owner: `readable_bases(owner_id)` for bases, and each chunk query
filters by `owner_id` first (on SQLite the keyword index holds the owner as a term of its own, so
a match never leaves the owner's rows). The keyword index is each database's own: SQLite's FTS5
table `knowledge_chunks_fts` is written here beside the chunks; PostgreSQL's GIN index over
`to_tsvector` follows the rows by itself. With pgvector (`parley.knowledge.vectors`) a chunk's
vector is written into `embedding_vec` beside its bytes, and its HNSW index follows.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from pgvector.sqlalchemy import VECTOR
from sqlalchemy import (
    ColumnElement,
    LargeBinary,
    Select,
    Table,
    bindparam,
    column,
    delete,
    func,
    insert,
    literal_column,
    select,
    table,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from parley.core.db import insert_of, new_id, rowcount, utcnow
from parley.core.pagination import CursorCodec, SortKey, paginate
from parley.files.models import READY, StoredFile
from parley.knowledge.models import (
    TEXT_SEARCH_CONFIG,
    KnowledgeBase,
    KnowledgeBaseFile,
    KnowledgeChunk,
)
from parley.knowledge.vectors import PGVECTOR, VECTOR_COLUMN, vector_backend

BASES_NEWEST_FIRST = SortKey("-created_at", KnowledgeBase.created_at, descending=True)
MAX_QUERY_TERMS = 32
_TERM = re.compile(r"\w+", re.UNICODE)
_FTS = table("knowledge_chunks_fts", column("text"), column("owner"), column("chunk_id"))
_FTS_TABLE: ColumnElement[Any] = literal_column("knowledge_chunks_fts")
_CONFIG: ColumnElement[Any] = literal_column(f"'{TEXT_SEARCH_CONFIG}'")
# PostgreSQL's stored `tsvector` of each chunk (a generated column the migration adds, GIN
# indexed): ranking reads it instead of parsing every matching chunk's text again.
_SEARCH_VECTOR: ColumnElement[Any] = literal_column("knowledge_chunks.search_vector")
_CHUNKS = cast(Table, KnowledgeChunk.__table__)
# The chunks' table with PostgreSQL's pgvector column, which no model maps (SQLite and servers
# without pgvector have none): the rows' inserts and updates name it where it exists.
_CHUNKS_WITH_VECTORS = table(
    "knowledge_chunks",
    *(column(chunk_column.name, chunk_column.type) for chunk_column in _CHUNKS.columns),
    column(VECTOR_COLUMN, VECTOR()),
)


def _is_sqlite(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "sqlite"


# -- bases --------------------------------------------------------------------------------------


def readable_bases(owner_id: uuid.UUID) -> Select[KnowledgeBase]:
    """The owner's knowledge bases: the start of every base read."""
    return select(KnowledgeBase).where(KnowledgeBase.owner_id == owner_id)


async def get_base(
    session: AsyncSession, owner_id: uuid.UUID, knowledge_id: uuid.UUID
) -> KnowledgeBase | None:
    """One of the owner's knowledge bases."""
    return (
        await session.execute(readable_bases(owner_id).where(KnowledgeBase.id == knowledge_id))
    ).scalar_one_or_none()


async def get_bases(
    session: AsyncSession, owner_id: uuid.UUID, knowledge_ids: Sequence[uuid.UUID]
) -> list[KnowledgeBase]:
    """The owner's bases among `knowledge_ids` (others' and unknown ids are left out)."""
    if not knowledge_ids:
        return []
    rows = await session.execute(
        readable_bases(owner_id).where(KnowledgeBase.id.in_(list(knowledge_ids)))
    )
    return list(rows.scalars().all())


async def list_bases(
    session: AsyncSession,
    owner_id: uuid.UUID,
    *,
    codec: CursorCodec,
    cursor: str | None,
    limit: int,
) -> tuple[list[KnowledgeBase], str | None]:
    """A page of the owner's knowledge bases, newest first."""
    statement, finish = paginate(
        readable_bases(owner_id),
        sort=BASES_NEWEST_FIRST,
        id_column=KnowledgeBase.id,
        cursor=cursor,
        limit=limit,
        codec=codec,
    )
    rows = (await session.execute(statement)).scalars().all()
    return finish(rows)


async def file_counts(
    session: AsyncSession, owner_id: uuid.UUID, knowledge_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, int]:
    """How many files each of the bases holds."""
    if not knowledge_ids:
        return {}
    rows = await session.execute(
        select(KnowledgeBaseFile.knowledge_id, func.count())
        .where(
            KnowledgeBaseFile.owner_id == owner_id,
            KnowledgeBaseFile.knowledge_id.in_(list(knowledge_ids)),
        )
        .group_by(KnowledgeBaseFile.knowledge_id)
    )
    return {knowledge_id: int(count) for knowledge_id, count in rows.all()}


async def link_file(
    session: AsyncSession, owner_id: uuid.UUID, knowledge_id: uuid.UUID, file_id: uuid.UUID
) -> None:
    """Put the file in the base (nothing if it is there already)."""
    await session.execute(
        insert_of(session, KnowledgeBaseFile)
        .values(knowledge_id=knowledge_id, file_id=file_id, owner_id=owner_id)
        .on_conflict_do_nothing(index_elements=["knowledge_id", "file_id"])
    )


async def unlink_file(
    session: AsyncSession, owner_id: uuid.UUID, knowledge_id: uuid.UUID, file_id: uuid.UUID
) -> bool:
    """Take the file out of the base; whether it was in it."""
    result = await session.execute(
        delete(KnowledgeBaseFile).where(
            KnowledgeBaseFile.owner_id == owner_id,
            KnowledgeBaseFile.knowledge_id == knowledge_id,
            KnowledgeBaseFile.file_id == file_id,
        )
    )
    return rowcount(result) == 1


def base_file_ids(owner_id: uuid.UUID, knowledge_id: uuid.UUID) -> Select[uuid.UUID]:
    """The ids of the files in one of the owner's bases, as a subquery."""
    return select(KnowledgeBaseFile.file_id).where(
        KnowledgeBaseFile.owner_id == owner_id, KnowledgeBaseFile.knowledge_id == knowledge_id
    )


async def files_in_bases(
    session: AsyncSession, owner_id: uuid.UUID, knowledge_ids: Sequence[uuid.UUID]
) -> list[uuid.UUID]:
    """The ids of the files the owner's bases hold."""
    if not knowledge_ids:
        return []
    rows = await session.execute(
        select(KnowledgeBaseFile.file_id)
        .where(
            KnowledgeBaseFile.owner_id == owner_id,
            KnowledgeBaseFile.knowledge_id.in_(list(knowledge_ids)),
        )
        .distinct()
    )
    return list(rows.scalars().all())


async def delete_base(session: AsyncSession, owner_id: uuid.UUID, knowledge_id: uuid.UUID) -> None:
    """Delete the base and its list of files (the files stay)."""
    await session.execute(
        delete(KnowledgeBaseFile).where(
            KnowledgeBaseFile.owner_id == owner_id,
            KnowledgeBaseFile.knowledge_id == knowledge_id,
        )
    )
    await session.execute(
        delete(KnowledgeBase).where(
            KnowledgeBase.owner_id == owner_id, KnowledgeBase.id == knowledge_id
        )
    )


# -- chunks -------------------------------------------------------------------------------------


def owner_term(owner_id: uuid.UUID) -> str:
    """The owner as a term of SQLite's keyword index: digits after a letter, which no tokenizer
    or stemmer changes, so two owners' terms never meet."""
    return f"o{owner_id.int}"


async def delete_chunks(session: AsyncSession, owner_id: uuid.UUID, file_id: uuid.UUID) -> None:
    """Delete the file's chunks (and, on SQLite, their keyword index rows)."""
    if _is_sqlite(session):
        await session.execute(
            delete(_FTS).where(
                _FTS.c.chunk_id.in_(
                    select(KnowledgeChunk.id).where(
                        KnowledgeChunk.owner_id == owner_id, KnowledgeChunk.file_id == file_id
                    )
                )
            )
        )
    await session.execute(
        delete(KnowledgeChunk).where(
            KnowledgeChunk.owner_id == owner_id, KnowledgeChunk.file_id == file_id
        )
    )


async def forget_file(session: AsyncSession, owner_id: uuid.UUID, file_id: uuid.UUID) -> None:
    """Remove a file from the knowledge side: its chunks and its places in bases."""
    await delete_chunks(session, owner_id, file_id)
    await session.execute(
        delete(KnowledgeBaseFile).where(
            KnowledgeBaseFile.owner_id == owner_id, KnowledgeBaseFile.file_id == file_id
        )
    )


def _chunk_values(chunk: KnowledgeChunk, now: datetime) -> dict[str, Any]:
    """A chunk's row for a Core INSERT: its id and times as the ORM's defaults would give them
    (set on the object too, so the caller sees them)."""
    if chunk.id is None:
        chunk.id = new_id()
    if chunk.created_at is None:
        chunk.created_at = now
    if chunk.updated_at is None:
        chunk.updated_at = now
    return {column.name: getattr(chunk, column.key) for column in _CHUNKS.columns}


async def add_chunks(session: AsyncSession, chunks: Sequence[KnowledgeChunk]) -> None:
    """Insert chunks in one statement (the objects are not added to the session), with, on
    SQLite, their keyword index rows, and with pgvector their vectors in `embedding_vec` too."""
    if not chunks:
        return
    now = utcnow()
    rows = [_chunk_values(chunk, now) for chunk in chunks]
    if await vector_backend(session) == PGVECTOR:
        import numpy as np

        for row in rows:
            row[VECTOR_COLUMN] = np.frombuffer(row["embedding"], dtype="<f4")
        await session.execute(insert(_CHUNKS_WITH_VECTORS), rows)
    else:
        await session.execute(insert(_CHUNKS), rows)
    if _is_sqlite(session):
        await session.execute(
            insert(_FTS),
            [
                {"text": chunk.text, "owner": owner_term(chunk.owner_id), "chunk_id": chunk.id.hex}
                for chunk in chunks
            ],
        )


async def replace_embeddings(
    session: AsyncSession,
    embeddings: Sequence[tuple[uuid.UUID, bytes]],
    *,
    embedding_model: str,
    dimension: int,
) -> None:
    """Give chunks new embeddings of another model (`(chunk id, float32 bytes)` each), in one
    executemany UPDATE; with pgvector their `embedding_vec` too."""
    if not embeddings:
        return
    pgvector = await vector_backend(session) == PGVECTOR
    target = _CHUNKS_WITH_VECTORS if pgvector else _CHUNKS
    values: dict[str, Any] = {
        "embedding": bindparam("new_embedding", type_=LargeBinary),
        "embedding_model": embedding_model,
        "dimension": dimension,
        "updated_at": utcnow(),
    }
    if pgvector:
        values[VECTOR_COLUMN] = bindparam("new_vector", type_=VECTOR())
    statement = update(target).where(target.c.id == bindparam("chunk_id")).values(values)
    params: list[dict[str, Any]] = [
        {"chunk_id": chunk_id, "new_embedding": blob} for chunk_id, blob in embeddings
    ]
    if pgvector:
        import numpy as np

        for param in params:
            param["new_vector"] = np.frombuffer(param["new_embedding"], dtype="<f4")
    await session.execute(statement, params)


async def fill_missing_vectors(session: AsyncSession, *, batch: int) -> int:
    """With pgvector: copy into `embedding_vec` the vectors of up to `batch` chunks that have
    none (written, during an upgrade, by a process that did not know the column yet); how many.
    Bytes of another length than their dimension are left alone."""
    if await vector_backend(session) != PGVECTOR:
        return 0
    import numpy as np

    chunks = _CHUNKS_WITH_VECTORS.c
    rows = (
        await session.execute(
            select(chunks.id, chunks.embedding)
            .where(
                chunks[VECTOR_COLUMN].is_(None),
                func.length(chunks.embedding) == chunks.dimension * 4,
            )
            .limit(batch)
        )
    ).all()
    if rows:
        await session.execute(
            update(_CHUNKS_WITH_VECTORS)
            .where(chunks.id == bindparam("chunk_id"))
            .values({VECTOR_COLUMN: bindparam("new_vector", type_=VECTOR())}),
            [
                {"chunk_id": row.id, "new_vector": np.frombuffer(row.embedding, dtype="<f4")}
                for row in rows
            ],
        )
    return len(rows)


# Words too common to tell passages apart: left out of keyword queries, where each would match
# nearly every passage (and make the database rank them all).
_STOPWORD_TEXT = """
a about after all also am an and any are as at be because been before being between both but by
can could did do does doing done during each few for from had has have having he her here hers
him his how i if in into is it its itself just me more most my no nor not now of off on once only
or other our ours out over own same she should so some such than that the their them then there
these they this those through to too under until up very was we were what when where which while
who whom why will with would you your yours
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def query_terms(query: str) -> list[str]:
    """The words of a search query that keyword search matches on (any of them): without the
    most common English words, unless the query has no other."""
    terms = list(dict.fromkeys(term.lower() for term in _TERM.findall(query)))
    kept = [term for term in terms if term not in STOPWORDS] or terms
    return kept[:MAX_QUERY_TERMS]


@dataclass(frozen=True, slots=True)
class ChunkHit:
    """A chunk a search found, and its score in that search (higher is better)."""

    chunk_id: uuid.UUID
    score: float


def fts_match(owner_id: uuid.UUID, terms: Sequence[str]) -> str:
    """An FTS5 query for any of `terms` within the owner's rows (each term quoted, so that no
    word of a query is read as FTS5 syntax)."""
    words = " OR ".join('"' + term.replace('"', "") + '"' for term in terms)
    return f'owner : "{owner_term(owner_id)}" AND text : ({words})'


async def keyword_hits(
    session: AsyncSession,
    owner_id: uuid.UUID,
    query: str,
    *,
    file_ids: Sequence[uuid.UUID] | None,
    limit: int,
) -> list[ChunkHit]:
    """The owner's chunks that share words with `query`, best first (BM25 on SQLite, `ts_rank_cd`
    on PostgreSQL), among `file_ids` when given, of ready files only."""
    terms = query_terms(query)
    if not terms or (file_ids is not None and not file_ids):
        return []
    if _is_sqlite(session):
        rank = func.bm25(_FTS_TABLE)
        statement = (
            select(KnowledgeChunk.id, (-rank).label("score"))
            .select_from(_FTS)
            .join(KnowledgeChunk, KnowledgeChunk.id == _FTS.c.chunk_id)
            .where(_FTS_TABLE.op("MATCH")(fts_match(owner_id, terms)))
            .order_by(rank)
        )
    else:
        vector = _SEARCH_VECTOR
        tsquery = func.to_tsquery(_CONFIG, " | ".join(terms))
        score = func.ts_rank_cd(vector, tsquery)
        statement = (
            select(KnowledgeChunk.id, score.label("score"))
            .where(vector.op("@@")(tsquery))
            .order_by(score.desc(), KnowledgeChunk.id)
        )
    statement = (
        statement.join(StoredFile, StoredFile.id == KnowledgeChunk.file_id)
        .where(KnowledgeChunk.owner_id == owner_id, StoredFile.status == READY)
        .limit(limit)
    )
    if file_ids is not None:
        statement = statement.where(KnowledgeChunk.file_id.in_(list(file_ids)))
    rows = await session.execute(statement)
    return [ChunkHit(row.id, float(row.score)) for row in rows]


def _as_uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


async def vectors_of(
    session: AsyncSession,
    owner_id: uuid.UUID,
    *,
    embedding_model: str,
    file_ids: Sequence[uuid.UUID] | None,
) -> list[tuple[uuid.UUID, bytes]]:
    """The owner's chunk embeddings of one model (ready files only; among `file_ids` if given)."""
    if file_ids is not None and not file_ids:
        return []
    statement = (
        select(KnowledgeChunk.id, KnowledgeChunk.embedding)
        .join(StoredFile, StoredFile.id == KnowledgeChunk.file_id)
        .where(
            KnowledgeChunk.owner_id == owner_id,
            KnowledgeChunk.embedding_model == embedding_model,
            StoredFile.status == READY,
        )
    )
    if file_ids is not None:
        statement = statement.where(KnowledgeChunk.file_id.in_(list(file_ids)))
    rows = await session.execute(statement)
    return [(row.id, row.embedding) for row in rows]


async def chunks_with_files(
    session: AsyncSession, owner_id: uuid.UUID, chunk_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, tuple[KnowledgeChunk, StoredFile]]:
    """The owner's chunks among `chunk_ids`, each with its file."""
    if not chunk_ids:
        return {}
    rows = await session.execute(
        select(KnowledgeChunk, StoredFile)
        .join(StoredFile, StoredFile.id == KnowledgeChunk.file_id)
        .where(KnowledgeChunk.owner_id == owner_id, KnowledgeChunk.id.in_(list(chunk_ids)))
        .options(defer(KnowledgeChunk.embedding))  # shown, not compared: leave the vector
    )
    return {chunk.id: (chunk, stored) for chunk, stored in rows.all()}
