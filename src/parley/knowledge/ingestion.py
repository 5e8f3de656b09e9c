"""Ingestion: the `files.ingest` job that makes an uploaded file searchable.

One attempt reads the file's bytes (`parley.files.storage`), extracts its text and cuts it into
chunks (`parley.knowledge.extraction` and `parley.knowledge.chunking`, in a child process of
`parley.knowledge.extractor`, within `EXTRACTION_MAX_PAGES`, `EXTRACTION_MAX_CHARS`,
`EXTRACTION_TIMEOUT_SECONDS` and `EXTRACTION_MEMORY_BYTES`), embeds them with the
`EMBEDDING_MODEL` in batches, reporting progress on the file and the job, and writes the chunks,
the file's `ready` status, its page and chunk counts in one transaction. The file moves
`queued -> processing -> ready | failed`.

A file that cannot be read (corrupt, encrypted, a zip bomb, too many pages, no text, missing
bytes) ends `failed` with the reason's code and message in that attempt; the job itself succeeds,
as retrying cannot help. A failure that may pass (the embedding provider is down) fails the
attempt and is retried with backoff; the last attempt's failure leaves the file `failed` with
`embedding_failed`. A file deleted while it is ingested is found gone at the final write, which
then writes nothing. After `EMBEDDING_MODEL` changes, `files.reembed_sweep` queues a
`files.reembed` job for each ready file embedded by another model: its chunks' vectors are
replaced in place (one batched UPDATE), and it stays searchable by keyword meanwhile. With
pgvector, the model's HNSW index is made before its first vectors are written
(`parley.knowledge.vectors.ensure_index`).

The transaction that marks a file ready writes `parley.file.ready.v1` to the outbox, the one
that fails it `parley.file.failed.v1` (`parley.files.events`).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.core.db import Database, utcnow
from parley.core.errors import ParleyError
from parley.events.outbox import add_row_event
from parley.files.events import FILE_FAILED, FILE_READY
from parley.files.models import (
    ERROR_MESSAGE_MAX_CHARS,
    FAILED,
    PROCESSING,
    READY,
    StoredFile,
)
from parley.files.schemas import FilePublic
from parley.files.service import storage_of
from parley.jobs.kinds import JobKind, JobRun
from parley.jobs.queue import enqueue
from parley.knowledge import repository
from parley.knowledge.chunking import Chunk
from parley.knowledge.extraction import ExtractionError, ExtractionLimits
from parley.knowledge.extractor import Extractor
from parley.knowledge.models import HEADING_MAX_CHARS, KnowledgeChunk
from parley.knowledge.vectors import ensure_index
from parley.llm.embeddings import Embedder, Embeddings
from parley.settings import Settings

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import numpy as np

EMBED_BATCH = 32
PROGRESS_EVERY_SECONDS = 1.0
# Of a file's progress: extraction and chunking take the first tenth, embedding the rest.
EXTRACTED_AT = 0.1


@dataclass(frozen=True, slots=True)
class _Claimed:
    owner_id: uuid.UUID
    sha256: str
    media_type: str


class Ingestion:
    """Runs `files.ingest` jobs over the process's database and embedding models."""

    def __init__(
        self,
        database: Database,
        settings: Settings,
        embeddings: Embeddings,
        extractor: Extractor,
    ) -> None:
        self.database = database
        self.settings = settings
        self.embeddings = embeddings
        self.extractor = extractor
        self.storage = storage_of(settings)
        self.limits = ExtractionLimits(
            max_pages=settings.extraction_max_pages, max_chars=settings.extraction_max_chars
        )
        self._reported_at: dict[uuid.UUID, float] = {}

    async def run(self, job: JobRun) -> None:
        """Ingest the job's file (see the module docstring)."""
        try:
            file_id = uuid.UUID(str(job.args["file_id"]))
        except (KeyError, ValueError):
            logger.warning("files.ingest job %s has no valid file id", job.id)
            return
        claimed = await self._start(file_id)
        if claimed is None:
            return  # deleted before it ran
        try:
            await self._ingest(job, file_id, claimed)
        except ExtractionError as exc:
            await self._fail(file_id, exc.code, exc.message)
        except ParleyError as exc:
            if job.attempt >= job.max_attempts:
                await self._fail(file_id, "embedding_failed", f"Embedding failed: {exc.message}")
                return
            await self._set_progress(file_id, 0.0)
            raise
        finally:
            self._reported_at.pop(file_id, None)

    async def reembed(self, job: JobRun) -> None:
        """Embed a ready file's chunks again with the current `EMBEDDING_MODEL`, in place: the
        file stays `ready` and searchable by keyword meanwhile, and its vectors switch model in
        one transaction."""
        try:
            file_id = uuid.UUID(str(job.args["file_id"]))
        except (KeyError, ValueError):
            logger.warning("files.reembed job %s has no valid file id", job.id)
            return
        embedder = self.embeddings.default()
        async with self.database.sessionmaker() as session:
            stored = await session.get(StoredFile, file_id)
            if (
                stored is None
                or stored.status != READY
                or stored.embedding_model == embedder.model_id
            ):
                return
            rows = (
                await session.execute(
                    select(KnowledgeChunk.id, KnowledgeChunk.text)
                    .where(KnowledgeChunk.file_id == file_id)
                    .order_by(KnowledgeChunk.ordinal)
                )
            ).all()
        import numpy as np

        vectors: list[np.ndarray] = []
        for first in range(0, len(rows), EMBED_BATCH):
            batch = rows[first : first + EMBED_BATCH]
            vectors.append(await embedder.embed([row.text for row in batch], purpose="passage"))
            await job.progress((first + len(batch)) / max(1, len(rows)))
        matrix = np.concatenate(vectors) if vectors else np.zeros((0, embedder.dimension))
        embeddings = [
            (row.id, np.asarray(vector, dtype="<f4").tobytes())
            for row, vector in zip(rows, matrix, strict=True)
        ]
        await ensure_index(self.database.engine, embedder.model_id, embedder.dimension)
        async with self.database.sessionmaker() as session:
            stored = await _lock_file(session, file_id)
            if stored is None or stored.status != READY:
                return  # deleted, or ingested anew, meanwhile
            await repository.replace_embeddings(
                session,
                embeddings,
                embedding_model=embedder.model_id,
                dimension=embedder.dimension,
            )
            stored.embedding_model = embedder.model_id
            await session.commit()
        logger.info("file %s embedded again with %s", file_id, embedder.model_id)

    async def _start(self, file_id: uuid.UUID) -> _Claimed | None:
        async with self.database.sessionmaker() as session:
            stored = await session.get(StoredFile, file_id)
            if stored is None:
                return None
            claimed = _Claimed(stored.owner_id, stored.sha256, stored.media_type)
            await session.execute(
                update(StoredFile)
                .where(StoredFile.id == file_id)
                .values(
                    status=PROCESSING,
                    progress=0.0,
                    error_code=None,
                    error_message=None,
                    updated_at=utcnow(),
                )
                .execution_options(synchronize_session=False)
            )
            await session.commit()
        return claimed

    async def _ingest(self, job: JobRun, file_id: uuid.UUID, claimed: _Claimed) -> None:
        path = self.storage.local_path(claimed.owner_id, claimed.sha256)
        if not await self.storage.exists(claimed.owner_id, claimed.sha256):
            raise ExtractionError("missing_bytes", "The file's stored bytes are missing.")
        # In a child process, killed at EXTRACTION_TIMEOUT_SECONDS (parley.knowledge.extractor).
        extracted, chunks = await self.extractor.read(path, claimed.media_type, self.limits)
        if not chunks:
            raise ExtractionError("no_text", "The file has no text to search.")
        await self._report(job, file_id, EXTRACTED_AT)
        embedder = self.embeddings.default()
        vectors = await self._embed(job, file_id, embedder, chunks)
        rows = [
            _chunk_row(claimed.owner_id, file_id, chunk, embedder, vector)
            for chunk, vector in zip(chunks, vectors, strict=True)
        ]
        # Outside the transaction below: creating it waits for writers, and that one is one.
        await ensure_index(self.database.engine, embedder.model_id, embedder.dimension)
        async with self.database.sessionmaker() as session:
            stored = await _lock_file(session, file_id)
            if stored is None:
                logger.info("file %s was deleted while it was ingested", file_id)
                return
            await repository.delete_chunks(session, claimed.owner_id, file_id)
            await repository.add_chunks(session, rows)
            stored.status = READY
            stored.progress = 1.0
            stored.pages = extracted.pages
            stored.chunks = len(rows)
            stored.embedding_model = embedder.model_id
            stored.error_code = None
            stored.error_message = None
            await _tell(session, FILE_READY, stored)
            await session.commit()
        logger.info("file %s ready: %d chunks", file_id, len(rows))

    async def _embed(
        self, job: JobRun, file_id: uuid.UUID, embedder: Embedder, chunks: Sequence[Chunk]
    ) -> np.ndarray:
        import numpy as np

        parts = []
        for first in range(0, len(chunks), EMBED_BATCH):
            batch = chunks[first : first + EMBED_BATCH]
            parts.append(await embedder.embed([chunk.text for chunk in batch], purpose="passage"))
            done = (first + len(batch)) / len(chunks)
            await self._report(job, file_id, EXTRACTED_AT + (1 - EXTRACTED_AT) * done * 0.99)
        return np.concatenate(parts).astype("<f4", copy=False)

    async def _report(self, job: JobRun, file_id: uuid.UUID, fraction: float) -> None:
        await job.progress(fraction)
        now = time.monotonic()
        # Per file: a worker ingests several at once, each reporting on its own.
        if now - self._reported_at.get(file_id, 0.0) >= PROGRESS_EVERY_SECONDS:
            self._reported_at[file_id] = now
            await self._set_progress(file_id, fraction)

    async def _set_progress(self, file_id: uuid.UUID, fraction: float) -> None:
        async with self.database.sessionmaker() as session:
            await session.execute(
                update(StoredFile)
                .where(StoredFile.id == file_id, StoredFile.status == PROCESSING)
                .values(progress=fraction, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            )
            await session.commit()

    async def _fail(self, file_id: uuid.UUID, code: str, message: str) -> None:
        logger.info("file %s failed: %s (%s)", file_id, code, message)
        async with self.database.sessionmaker() as session:
            await session.execute(
                update(StoredFile)
                .where(StoredFile.id == file_id)
                .values(
                    status=FAILED,
                    progress=0.0,
                    error_code=code[:40],
                    error_message=message[:ERROR_MESSAGE_MAX_CHARS],
                    updated_at=utcnow(),
                )
                .execution_options(synchronize_session=False)
            )
            stored = await session.get(StoredFile, file_id, populate_existing=True)
            if stored is not None:
                await _tell(session, FILE_FAILED, stored)
            await session.commit()


async def _tell(session: AsyncSession, event_type: str, stored: StoredFile) -> None:
    await add_row_event(
        session, event_type, stored, collection="files", view=FilePublic, user_id=stored.owner_id
    )


async def _lock_file(session: AsyncSession, file_id: uuid.UUID) -> StoredFile | None:
    """The file, locked for this transaction (PostgreSQL: against a concurrent delete; SQLite
    serialises writers anyway)."""
    statement = select(StoredFile).where(StoredFile.id == file_id)
    if session.get_bind().dialect.name == "postgresql":
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


def _chunk_row(
    owner_id: uuid.UUID,
    file_id: uuid.UUID,
    chunk: Chunk,
    embedder: Embedder,
    vector: np.ndarray,
) -> KnowledgeChunk:
    import numpy as np

    return KnowledgeChunk(
        owner_id=owner_id,
        file_id=file_id,
        ordinal=chunk.ordinal,
        page=chunk.page,
        heading=chunk.heading[:HEADING_MAX_CHARS] if chunk.heading else None,
        start_offset=chunk.start,
        end_offset=chunk.end,
        text=chunk.text,
        embedding_model=embedder.model_id,
        dimension=embedder.dimension,
        embedding=np.asarray(vector, dtype="<f4").tobytes(),
    )


REEMBED_JOB = JobKind(
    "files.reembed", queue="default", max_attempts=5, timeout_seconds=1800, backoff_seconds=10
)
# Looks for files embedded by another model than EMBEDDING_MODEL (one attempt: the next slot
# retries).
REEMBED_SWEEP_JOB = JobKind("files.reembed_sweep", max_attempts=1, timeout_seconds=600)


async def queue_stale(database: Database, embedding_model: str, *, batch: int = 500) -> int:
    """Queue `files.reembed` for every ready file whose chunks another embedding model made
    (after `EMBEDDING_MODEL` changed); how many were queued now. One job per file and model (an
    idempotency key), however often this runs."""
    queued = 0
    after = uuid.UUID(int=0)
    while True:
        async with database.sessionmaker() as session:
            stale = (
                (
                    await session.execute(
                        select(StoredFile.id)
                        .where(
                            StoredFile.status == READY,
                            StoredFile.embedding_model != embedding_model,
                            StoredFile.id > after,
                        )
                        .order_by(StoredFile.id)
                        .limit(batch)
                    )
                )
                .scalars()
                .all()
            )
            if not stale:
                return queued
            for file_id in stale:
                await enqueue(
                    session,
                    REEMBED_JOB,
                    {"file_id": str(file_id), "model": embedding_model},
                    idempotency_key=f"files.reembed:{file_id}:{embedding_model}",
                )
            await session.commit()
            queued += len(stale)
            after = stale[-1]


async def fill_missing_vectors(database: Database, *, batch: int = 500) -> int:
    """With pgvector, give every chunk without a vector in `embedding_vec` its vector (see
    `repository.fill_missing_vectors`), a batch a transaction; how many."""
    filled = 0
    while True:
        async with database.sessionmaker() as session:
            count = await repository.fill_missing_vectors(session, batch=batch)
            await session.commit()
        filled += count
        if count < batch:
            return filled
