"""Which vector search backend the test database has, and that it agrees with the exact scan.

On PostgreSQL without pgvector (the machine's server) the backend is `exact`; on SQLite it is
`sqlite-vec` where this interpreter can load SQLite extensions and `exact` where it cannot (the
sqlite-vec comparisons then skip, saying so: run them under a Python whose sqlite3 loads
extensions, e.g. Debian's, see docs/knowledge.md). The backend is logged at start-up. sqlite-vec
answers what the exact scan answers, owner, file and model scoped, and stored vectors it cannot
compare (bytes of another length, a zero vector) are skipped, never an error."""

from __future__ import annotations

import logging
import os
import sqlite3
import uuid

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from parley.core.db import new_id
from parley.files.models import READY, StoredFile
from parley.knowledge import repository, vectors
from parley.knowledge.models import KnowledgeChunk
from parley.knowledge.repository import ChunkHit
from parley.llm.embedding_catalog import load_embedding_catalog
from tests.fixtures.accounts import TestUser
from tests.knowledge.conftest import (
    assert_same_ranking,
    ids_of,
    nearest_by_each,
    seed_chunks,
    unit_vectors,
)

MODEL, DIMENSION = "offline:embed", 384


def _sqlite_vec_loadable() -> str | None:
    """Why this interpreter cannot use sqlite-vec (None: it can)."""
    if not hasattr(sqlite3.Connection, "enable_load_extension"):
        return (
            "this Python's sqlite3 cannot load extensions (sqlite3.Connection has no "
            "enable_load_extension): run under a Python that can, e.g. Debian's /usr/bin/python3.11"
        )
    try:
        import sqlite_vec  # noqa: F401
    except ImportError:
        return "the sqlite-vec package is not installed"
    return None


async def _postgres_has_pgvector(application: FastAPI) -> bool:
    async with application.state.database.engine.connect() as connection:
        found = await connection.scalar(
            text("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'")
        )
    return bool(found)


@pytest.fixture
def sqlite_vec_app(app: FastAPI, db_kind: str) -> FastAPI:
    """The session app, when its database is SQLite with sqlite-vec loaded (else a skip)."""
    if db_kind != "sqlite":
        pytest.skip("sqlite-vec is SQLite's")
    reason = _sqlite_vec_loadable()
    if reason is not None:
        if os.environ.get("PARLEY_REQUIRE_SQLITE_VEC") == "1":  # set by .ci/run's sqlite-vec step
            pytest.fail(f"PARLEY_REQUIRE_SQLITE_VEC=1 but {reason}")
        pytest.skip(reason)
    return app


async def test_the_backend_in_use_is_detected_and_logged(
    app: FastAPI, db_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = app.state.database.engine
    if db_kind == "postgres":
        expected = vectors.PGVECTOR if await _postgres_has_pgvector(app) else vectors.EXACT
    else:
        expected = vectors.EXACT if _sqlite_vec_loadable() else vectors.SQLITE_VEC
    assert await vectors.vector_backend(engine) == expected
    async with app.state.database.sessionmaker() as session:
        assert await vectors.vector_backend(session) == expected
    info = await vectors.backend_info(engine)
    if expected == vectors.EXACT:
        assert info.detail.startswith("exact scan in numpy: ")
        if db_kind == "postgres":
            assert "PostgreSQL has no pgvector" in info.detail
            assert "apt install postgresql-NN-pgvector" in info.detail
    with caplog.at_level(logging.INFO, logger="parley.knowledge.vectors"):
        await vectors.announce(engine, load_embedding_catalog(app.state.settings))
    assert f"knowledge vector search: {expected} ({info.detail})" in caplog.messages


async def _seed_scoping_cases(
    application: FastAPI, owner_id: uuid.UUID, other_id: uuid.UUID
) -> tuple[np.ndarray, list[tuple[uuid.UUID, list[uuid.UUID]]], dict[str, list[uuid.UUID]]]:
    """300 chunks of the owner's and 300 of another's (one model), and beside them rows a
    search may not or cannot compare: another model's, and two files (one ready, one still
    processing) each holding bytes of another length, a zero vector and a copy of the owner's
    first vector. The owner's vectors, files, and the odd files' chunks by status."""
    rng = np.random.default_rng(3)
    database = application.state.database
    mine = unit_vectors(rng, 300, DIMENSION)
    files = await seed_chunks(database, owner_id, mine, model_id=MODEL)
    await seed_chunks(database, other_id, unit_vectors(rng, 300, DIMENSION), model_id=MODEL)
    await seed_chunks(database, owner_id, unit_vectors(rng, 5, 8), model_id="openai:other")
    odd: dict[str, list[uuid.UUID]] = {}
    async with database.sessionmaker() as session:
        for status in (READY, "processing"):
            stored = StoredFile(
                id=new_id(),
                owner_id=owner_id,
                filename="odd.md",
                media_type="text/markdown",
                size_bytes=1,
                sha256=uuid.uuid4().hex * 2,
                status=status,
                progress=1.0,
                chunks=3,
                embedding_model=MODEL,
            )
            session.add(stored)
            await session.flush()
            blobs = [b"\x00" * 10, bytes(4 * DIMENSION), mine[0].astype("<f4").tobytes()]
            chunks = [
                KnowledgeChunk(
                    owner_id=owner_id,
                    file_id=stored.id,
                    ordinal=index,
                    page=None,
                    heading=None,
                    start_offset=0,
                    end_offset=1,
                    text="odd",
                    embedding_model=MODEL,
                    dimension=DIMENSION,
                    embedding=blob,
                )
                for index, blob in enumerate(blobs)
            ]
            await repository.add_chunks(session, chunks)
            odd[status] = [chunk.id for chunk in chunks]
        await session.commit()
    return mine, files, odd


async def _both(
    application: FastAPI,
    owner_id: uuid.UUID,
    query: np.ndarray,
    *,
    file_ids: list[uuid.UUID] | None = None,
    limit: int = 10,
) -> tuple[list[ChunkHit], list[ChunkHit]]:
    exact, other = await nearest_by_each(
        application,
        owner_id,
        query,
        (vectors.EXACT, vectors.SQLITE_VEC),
        model_id=MODEL,
        dimension=DIMENSION,
        file_ids=file_ids,
        limit=limit,
    )
    return exact, other


async def test_sqlite_vec_agrees_with_the_exact_scan(
    sqlite_vec_app: FastAPI, user: TestUser, other_user: TestUser
) -> None:
    owner_id = uuid.UUID(user.id)
    mine, files, odd = await _seed_scoping_cases(sqlite_vec_app, owner_id, uuid.UUID(other_user.id))
    owned = {chunk for _, chunks in files for chunk in chunks}
    copy = odd[READY][2]
    rng = np.random.default_rng(5)
    for query in [*unit_vectors(rng, 3, DIMENSION), mine[42]]:
        exact, in_sql = await _both(sqlite_vec_app, owner_id, query)
        assert_same_ranking(exact, in_sql)
        assert {hit.chunk_id for hit in in_sql} <= owned | {copy}
    exact, in_sql = await _both(sqlite_vec_app, owner_id, mine[42], limit=1)
    assert ids_of(in_sql) == ids_of(exact) == [files[0][1][42]]
    # The first vector twice (its chunk, and the ready odd file's copy), never the copy in the
    # file still processing.
    exact, in_sql = await _both(sqlite_vec_app, owner_id, mine[0], limit=2)
    assert set(ids_of(in_sql)) == set(ids_of(exact)) == {files[0][1][0], copy}
    file_id, chunks = files[2]
    exact, in_sql = await _both(sqlite_vec_app, owner_id, mine[42], file_ids=[file_id], limit=50)
    assert sorted(ids_of(in_sql)) == sorted(chunks)
    assert_same_ranking(exact, in_sql)
    exact, in_sql = await _both(sqlite_vec_app, owner_id, mine[7], limit=1000)
    # The 300 and the copy; the exact scan has the zero vector too (a dot product of 0), whose
    # distance sqlite-vec leaves NULL; bytes of another length neither compares.
    assert set(ids_of(in_sql)) == owned | {copy}
    assert set(ids_of(exact)) == owned | {copy, odd[READY][1]}


async def test_search_answers_over_the_api_with_the_backend_in_use(
    client: httpx.AsyncClient, user: TestUser, other_user: TestUser, app: FastAPI
) -> None:
    owner_id = uuid.UUID(user.id)
    await _seed_scoping_cases(app, owner_id, uuid.UUID(other_user.id))
    response = await client.get(
        "/api/knowledge/search",
        params={"q": "synthetic passage", "limit": 50},
        headers=user.headers,
    )
    assert response.status_code == 200, response.text
    items = response.json()["data"]["items"]
    assert len(items) == 50
    async with app.state.database.sessionmaker() as session:
        found = await repository.chunks_with_files(
            session, owner_id, [uuid.UUID(item["chunk_id"]) for item in items]
        )
    assert len(found) == 50  # every hit the owner's own
