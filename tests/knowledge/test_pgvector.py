"""Knowledge search on PostgreSQL with pgvector (an embedded PostgreSQL 18 with pgvector 0.8, its
own migrated database and app): the backend is detected and the migration made the column and
the default model's index; ingestion through the API fills the vectors and search finds the right
passages; another user's chunks never come back and a file scope holds; the planner answers the
vector query from the model's HNSW index; and the index's answers agree with the exact scan's,
filtered searches (a small owner among many, one file) included; and the migration, over chunks
written before it, goes up (filling the column, building the index), down and up again."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from bench.embedded_pg import EmbeddedPostgres
from fastapi import FastAPI
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from parley import migrate
from parley.accounts.models import User
from parley.core.db import Database, build_engine
from parley.files.models import READY, StoredFile
from parley.jobs.worker import Worker
from parley.knowledge import vectors
from parley.knowledge.ingestion import fill_missing_vectors
from parley.knowledge.models import KnowledgeChunk
from parley.knowledge.nearest import pgvector_statement
from parley.knowledge.repository import ChunkHit
from parley.knowledge.search import vector_search
from parley.llm.embedding_catalog import OFFLINE_EMBEDDING_DIMENSION
from parley.llm.schemas import OFFLINE_EMBEDDING_MODEL_ID
from parley.settings import Settings
from tests.fixtures.databases import recreate_postgres_database
from tests.knowledge.conftest import (
    assert_same_ranking,
    explain,
    ids_of,
    ingest_markdown,
    nearest_by_each,
    register,
    search,
    seed_chunks,
    unit_vectors,
)
from tests.knowledge.test_knowledge_api import BIKES, BREAD
from tests.test_migrations import schema_differences

OFFLINE, DIMENSION = OFFLINE_EMBEDDING_MODEL_ID, OFFLINE_EMBEDDING_DIMENSION


async def _exact_and_indexed(
    application: FastAPI,
    owner_id: uuid.UUID,
    query: np.ndarray,
    *,
    file_ids: list[uuid.UUID] | None = None,
    limit: int = 10,
) -> tuple[list[ChunkHit], list[ChunkHit]]:
    """The nearest chunks by the exact scan and by pgvector, for the same query."""
    exact, other = await nearest_by_each(
        application,
        owner_id,
        query,
        (vectors.EXACT, vectors.PGVECTOR),
        model_id=OFFLINE,
        dimension=DIMENSION,
        file_ids=file_ids,
        limit=limit,
    )
    return exact, other


async def test_pgvector_is_detected_with_the_column_and_the_default_models_index(
    pgvector_app: FastAPI,
) -> None:
    engine = pgvector_app.state.database.engine
    assert await vectors.vector_backend(engine) == vectors.PGVECTOR
    info = await vectors.backend_info(engine)
    assert info.detail.startswith("pgvector 0.8")
    name = vectors.index_name(OFFLINE, DIMENSION)
    async with engine.connect() as connection:
        column = await connection.scalar(
            text(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'knowledge_chunks'::regclass AND attname = 'embedding_vec'"
            )
        )
        definition = await connection.scalar(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = :name"), {"name": name}
        )
    assert column == "vector"  # untyped: each model's own length
    assert definition is not None, "start-up made no index for the default model"
    assert "USING hnsw (((embedding_vec)::vector(384)) vector_cosine_ops)" in definition
    assert "embedding_model)::text = 'offline:embed'" in definition
    assert "dimension = 384" in definition


async def test_ingestion_fills_the_vectors_and_search_finds_the_passages(
    pgvector_app: FastAPI, pgvector_client: httpx.AsyncClient, pgvector_worker: Worker
) -> None:
    user = await register(pgvector_client)
    await ingest_markdown(pgvector_client, user, [("bikes.md", BIKES), ("bread.md", BREAD)])
    async with pgvector_app.state.database.sessionmaker() as session:
        counts = (
            await session.execute(
                select(
                    func.count(),
                    func.count(text("embedding_vec")),
                    func.count().filter(text("vector_dims(embedding_vec) = dimension")),
                ).select_from(KnowledgeChunk)
            )
        ).one()
    assert counts[0] > 0
    assert tuple(counts) == (counts[0],) * 3  # every chunk's vector, of its dimension
    by_meaning = await search(pgvector_client, user, "what inflation should my wheels have")
    assert "psi" in by_meaning[0]["text"]
    by_words = await search(pgvector_client, user, "covered pot uncover")
    assert "covered pot" in by_words[0]["text"]
    assert by_words[0]["heading"] == "Baking"


async def test_search_stays_within_the_owner_and_the_files(
    pgvector_app: FastAPI, pgvector_client: httpx.AsyncClient, pgvector_worker: Worker
) -> None:
    owner, other = await register(pgvector_client), await register(pgvector_client)
    bikes, bread = await ingest_markdown(
        pgvector_client, owner, [("bikes.md", BIKES), ("bread.md", BREAD)]
    )
    [theirs] = await ingest_markdown(pgvector_client, other, [("bikes.md", BIKES)])
    for query in ("oil the chain", "tyre pressure psi", "sourdough starter flour"):
        hits = await search(pgvector_client, owner, query, limit=50)
        assert hits
        assert {hit["file_id"] for hit in hits} <= {bikes, bread}
        only_bread = await search(pgvector_client, owner, query, file_id=bread)
        assert {hit["file_id"] for hit in only_bread} <= {bread}
    embedder = pgvector_app.state.runtime.embeddings.default()
    async with pgvector_app.state.database.sessionmaker() as session:
        nearest = await vector_search(
            session, uuid.UUID(other.id), "oil the chain", embedder, file_ids=None, limit=50
        )
        theirs_only = {
            row.file_id
            for row in await session.execute(
                select(KnowledgeChunk.file_id).where(
                    KnowledgeChunk.id.in_([hit.chunk_id for hit in nearest])
                )
            )
        }
    assert theirs_only == {uuid.UUID(theirs)}


async def test_the_planner_serves_the_vector_query_from_the_hnsw_index(
    pgvector_app: FastAPI, pgvector_client: httpx.AsyncClient
) -> None:
    owner, other = await register(pgvector_client), await register(pgvector_client)
    rng = np.random.default_rng(7)
    database = pgvector_app.state.database
    for user in (owner, other):
        vectors_of_user = unit_vectors(rng, 1500, DIMENSION)
        await seed_chunks(database, uuid.UUID(user.id), vectors_of_user, model_id=OFFLINE)
    async with database.engine.begin() as connection:
        await connection.exec_driver_sql("ANALYZE knowledge_chunks")
        await connection.exec_driver_sql("ANALYZE files")
    query = unit_vectors(rng, 1, DIMENSION)[0]
    statement = pgvector_statement(
        uuid.UUID(owner.id), query, model_id=OFFLINE, dimension=DIMENSION, file_ids=None, limit=50
    )
    async with database.sessionmaker() as session:
        await session.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
        plan = await explain(session, statement)
        rows = (await session.execute(statement)).all()
    assert f"Index Scan using {vectors.index_name(OFFLINE, DIMENSION)}" in plan, plan
    # The index alone gives the 50 asked for (no exact fallback needed), all the owner's.
    async with database.sessionmaker() as session:
        owned = set(
            (
                await session.execute(
                    select(KnowledgeChunk.id).where(KnowledgeChunk.owner_id == uuid.UUID(owner.id))
                )
            ).scalars()
        )
    assert len(rows) == 50
    assert {row.id for row in rows} <= owned
    exact = pgvector_statement(
        uuid.UUID(owner.id),
        query,
        model_id=OFFLINE,
        dimension=DIMENSION,
        file_ids=None,
        limit=50,
        indexed=False,
    )
    async with database.sessionmaker() as session:
        plan = await explain(session, exact)
    assert "hnsw" not in plan, plan  # the fallback is exact: no index could serve it


async def test_pgvector_agrees_with_the_exact_scan_filtered_or_not(
    pgvector_app: FastAPI, pgvector_client: httpx.AsyncClient
) -> None:
    owners = [uuid.UUID((await register(pgvector_client)).id) for _ in range(3)]
    big, crowd, small = owners
    rng = np.random.default_rng(11)
    database = pgvector_app.state.database
    big_vectors = unit_vectors(rng, 1000, DIMENSION)
    files = await seed_chunks(database, big, big_vectors, model_id=OFFLINE)
    await seed_chunks(database, crowd, unit_vectors(rng, 1500, DIMENSION), model_id=OFFLINE)
    [(_, small_chunks)] = await seed_chunks(
        database, small, unit_vectors(rng, 20, DIMENSION), model_id=OFFLINE
    )
    async with database.engine.begin() as connection:
        await connection.exec_driver_sql("ANALYZE knowledge_chunks")
    big_chunks = {chunk for _, chunks in files for chunk in chunks}

    # A query near one of the big owner's chunks: that chunk first, by either backend.
    file_id, chunks = files[3]
    near = big_vectors[3 * 50 + 7] + 0.05 * unit_vectors(rng, 1, DIMENSION)[0]
    near /= np.linalg.norm(near)
    exact, indexed = await _exact_and_indexed(pgvector_app, big, near)
    assert ids_of(exact)[0] == ids_of(indexed)[0] == chunks[7]
    # Random queries: the index's top 10 are mostly the exact top 10 (HNSW is approximate).
    overlap = []
    for query in unit_vectors(rng, 5, DIMENSION):
        exact, indexed = await _exact_and_indexed(pgvector_app, big, query)
        assert len(indexed) == 10
        assert set(ids_of(indexed)) <= big_chunks
        overlap.append(len(set(ids_of(exact)) & set(ids_of(indexed))) / 10)
    assert np.mean(overlap) >= 0.8, overlap
    # The small owner among many: all 20 of theirs for 50 asked, as the exact scan has them.
    exact, indexed = await _exact_and_indexed(pgvector_app, small, near, limit=50)
    assert sorted(ids_of(indexed)) == sorted(small_chunks)
    assert_same_ranking(exact, indexed)
    # One file of the big owner's: its chunks only, as the exact scan ranks them.
    exact, indexed = await _exact_and_indexed(pgvector_app, big, near, file_ids=[file_id], limit=5)
    assert_same_ranking(exact, indexed)
    assert ids_of(indexed)[0] == chunks[7]
    assert set(ids_of(indexed)) <= set(chunks)


def test_the_migration_backfills_indexes_and_goes_down_and_up(
    pgvector_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    """On a database with chunks from before it, the migration creates the extension, fills
    `embedding_vec` from the stored bytes and builds each model's index; down, the column (and
    its indexes) go; up again, all comes back."""
    name = f"parley_migration_{uuid.uuid4().hex[:8]}"
    asyncio.run(recreate_postgres_database(pgvector_server.url(), name, create=True))
    url = pgvector_server.url(name)
    settings = Settings(_env_file=None, database_url=url, data_dir=tmp_path)
    try:
        migrate.upgrade(settings, BEFORE)
        vector = unit_vectors(np.random.default_rng(1), 1, 8)[0]
        asyncio.run(_one_chunk_before(settings, vector))
        migrate.upgrade(settings)
        assert asyncio.run(_pgvector_state(settings)) == (True, [vector.tolist()], True)
        migrate.downgrade(settings, BEFORE)
        assert asyncio.run(_pgvector_state(settings)) == (False, [], False)
        migrate.upgrade(settings)
        assert asyncio.run(_pgvector_state(settings)) == (True, [vector.tolist()], True)
    finally:
        asyncio.run(recreate_postgres_database(pgvector_server.url(), name, create=False))


BEFORE = "0ae8112ed792"  # the revision before pgvector's


async def _one_chunk_before(settings: Settings, vector: np.ndarray) -> None:
    """A user, a ready file and one chunk of a model of 8 dimensions, written as before the
    migration (no `embedding_vec` yet)."""
    database = Database.from_settings(settings)
    try:
        async with database.sessionmaker() as session:
            user = User(email=f"m-{uuid.uuid4().hex[:8]}@example.com", display_name="m")
            session.add(user)
            await session.flush()
            await _seed_chunks_of(session, user.id, vector)
            await session.commit()
    finally:
        await database.dispose()


async def _seed_chunks_of(session: AsyncSession, owner_id: uuid.UUID, vector: np.ndarray) -> None:
    stored = StoredFile(
        owner_id=owner_id,
        filename="old.md",
        media_type="text/markdown",
        size_bytes=1,
        sha256="0" * 64,
        status=READY,
        progress=1.0,
        chunks=1,
        embedding_model="openai:old",
    )
    session.add(stored)
    await session.flush()
    session.add(
        KnowledgeChunk(
            owner_id=owner_id,
            file_id=stored.id,
            ordinal=0,
            page=None,
            heading=None,
            start_offset=0,
            end_offset=3,
            text="old",
            embedding_model="openai:old",
            dimension=8,
            embedding=np.asarray(vector, dtype="<f4").tobytes(),
        )
    )


async def _pgvector_state(settings: Settings) -> tuple[bool, list[list[float]], bool]:
    """Whether the column exists, its values, and whether the old model's index exists."""
    engine = build_engine(settings)
    try:
        async with engine.connect() as connection:
            has_column = bool(
                await connection.scalar(
                    text(
                        "SELECT count(*) FROM pg_attribute WHERE attrelid = "
                        "'knowledge_chunks'::regclass AND attname = 'embedding_vec' "
                        "AND NOT attisdropped"
                    )
                )
            )
            values = []
            if has_column:
                rows = await connection.execute(
                    text("SELECT embedding_vec::text FROM knowledge_chunks")
                )
                values = [
                    np.asarray(row[0].strip("[]").split(","), dtype=np.float32).tolist()
                    for row in rows
                ]
            has_index = await connection.scalar(
                text("SELECT to_regclass(:name) IS NOT NULL"),
                {"name": vectors.index_name("openai:old", 8)},
            )
        return has_column, values, bool(has_index)
    finally:
        await engine.dispose()


def test_a_user_who_may_not_create_the_extension_keeps_the_exact_scan(
    pgvector_server: EmbeddedPostgres, tmp_path: Path
) -> None:
    """pgvector is not a trusted extension: migrated by a database owner who is no superuser,
    nothing changes and search stays exact, saying why; once a superuser has created the
    extension, migrating again as the docs say (down past the migration, up) enables it."""
    name, role = f"parley_owner_{uuid.uuid4().hex[:8]}", f"owner_{uuid.uuid4().hex[:8]}"
    admin = pgvector_server.url()
    asyncio.run(_as_admin(admin, f'CREATE ROLE "{role}" LOGIN'))
    asyncio.run(_as_admin(admin, f'CREATE DATABASE "{name}" OWNER "{role}"'))
    url = pgvector_server.url(name).replace("postgres@", f"{role}@")
    settings = Settings(_env_file=None, database_url=url, data_dir=tmp_path)
    try:
        migrate.upgrade(settings)
        info = asyncio.run(_backend_of(settings))
        assert info.backend == vectors.EXACT
        assert "pgvector is on the server but not in this database" in info.detail
        asyncio.run(_as_admin(pgvector_server.url(name), "CREATE EXTENSION vector"))
        assert "came after the migration" in asyncio.run(_backend_of(settings)).detail
        migrate.downgrade(settings, BEFORE)
        migrate.upgrade(settings)
        assert asyncio.run(_backend_of(settings)).backend == vectors.PGVECTOR
    finally:
        asyncio.run(recreate_postgres_database(admin, name, create=False))
        asyncio.run(_as_admin(admin, f'DROP ROLE "{role}"'))


async def _as_admin(url: str, statement: str) -> None:
    engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.exec_driver_sql(statement)
    finally:
        await engine.dispose()


async def _backend_of(settings: Settings) -> vectors.BackendInfo:
    """The backend a new engine finds (each engine looks once)."""
    engine = build_engine(settings)
    try:
        return await vectors.backend_info(engine)
    finally:
        await engine.dispose()


def test_no_drift_between_the_migrations_and_the_models_with_pgvector(
    pgvector_url: str,
) -> None:
    """The pgvector database (the session's, migrated, its indexes made) has no more than the
    models declare, the migration's own column and indexes apart."""

    async def differences() -> list[Any]:
        engine = build_engine(Settings(_env_file=None, database_url=pgvector_url))
        try:
            async with engine.connect() as connection:
                found: list[Any] = await connection.run_sync(schema_differences)
                return found
        finally:
            await engine.dispose()

    assert asyncio.run(differences()) == []


async def test_the_sweep_gives_chunks_without_a_vector_theirs(
    pgvector_app: FastAPI, pgvector_client: httpx.AsyncClient
) -> None:
    """A chunk written without `embedding_vec` (by a process from before the migration) gets it
    from its bytes; one whose bytes are not its dimension's stays without."""
    owner = uuid.UUID((await register(pgvector_client)).id)
    database = pgvector_app.state.database
    vectors_of_owner = unit_vectors(np.random.default_rng(2), 3, DIMENSION)
    [(_, chunks)] = await seed_chunks(database, owner, vectors_of_owner, model_id=OFFLINE)
    async with database.engine.begin() as connection:
        await connection.execute(
            text("UPDATE knowledge_chunks SET embedding_vec = NULL WHERE id = :id"),
            {"id": chunks[0]},
        )
        await connection.execute(
            text(
                "UPDATE knowledge_chunks SET embedding_vec = NULL, embedding = '\\x00'::bytea "
                "WHERE id = :id"
            ),
            {"id": chunks[1]},
        )
    assert await fill_missing_vectors(database, batch=1) == 1
    async with database.engine.connect() as connection:
        rows = dict(
            (
                await connection.execute(
                    text(
                        "SELECT id, embedding_vec::text FROM knowledge_chunks WHERE id = ANY(:ids)"
                    ),
                    {"ids": chunks},
                )
            ).all()
        )
    restored = np.asarray(rows[chunks[0]].strip("[]").split(","), dtype=np.float32)
    assert restored.tolist() == vectors_of_owner[0].tolist()
    assert rows[chunks[1]] is None
    assert rows[chunks[2]] is not None
