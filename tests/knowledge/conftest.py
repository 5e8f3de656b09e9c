"""Knowledge-test helpers: uploading through the API, waiting for ingestion, searching (the
`worker` fixture that ingests is the root conftest's), synthetic chunks, EXPLAIN; and a second
deployment on PostgreSQL with pgvector (an embedded server, `bench.embedded_pg`) with its own
app, client and worker, for the tests of the pgvector backend. Its tables are emptied after each
test that uses its client."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import httpx
import numpy as np
import pytest
from bench.embedded_pg import EmbeddedPostgres, EmbeddedPostgresUnavailable
from fastapi import FastAPI
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession

from parley import migrate
from parley.app import create_app
from parley.background import build_worker
from parley.core.db import Database, new_id
from parley.files.models import READY, StoredFile
from parley.jobs.worker import Worker
from parley.knowledge import repository
from parley.knowledge.models import KnowledgeChunk
from parley.knowledge.nearest import nearest_chunks
from parley.knowledge.repository import ChunkHit
from parley.settings import Settings
from tests.fixtures.accounts import PASSWORD, TestUser
from tests.fixtures.databases import empty_tables, recreate_postgres_database
from tests.fixtures.polling import wait_for
from tests.fixtures.settings import make_settings

Uploader = Callable[..., Any]
PGVECTOR_DATABASE = "parley_pgvector"


async def upload(
    client: httpx.AsyncClient,
    user: TestUser,
    name: str,
    content: bytes,
    media_type: str = "application/octet-stream",
    **form: str,
) -> httpx.Response:
    """`POST /api/files` with one file."""
    return await client.post(
        "/api/files",
        files={"file": (name, content, media_type)},
        data=form,
        headers=user.headers,
    )


async def file_of(client: httpx.AsyncClient, user: TestUser, file_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/files/{file_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def settled(client: httpx.AsyncClient, user: TestUser, file_id: str) -> dict[str, Any]:
    """The file once its ingestion has ended (ready or failed)."""

    async def check() -> dict[str, Any] | None:
        data = await file_of(client, user, file_id)
        return data if data["status"] in ("ready", "failed") else None

    result: dict[str, Any] = await wait_for(check, within=60)
    return result


async def search(
    client: httpx.AsyncClient, user: TestUser, q: str, **params: Any
) -> list[dict[str, Any]]:
    response = await client.get(
        "/api/knowledge/search", params={"q": q, **params}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["data"]["items"]
    return items


async def register(client: httpx.AsyncClient) -> TestUser:
    """A new user signed up through `client`'s app."""
    email = f"user-{uuid.uuid4().hex[:10]}@example.com"
    response = await client.post("/api/auth/register", json={"email": email, "password": PASSWORD})
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    return TestUser(
        id=data["user"]["id"],
        email=email,
        password=PASSWORD,
        access_token=data["tokens"]["access_token"],
        refresh_token=data["tokens"]["refresh_token"],
    )


async def ingest_markdown(
    client: httpx.AsyncClient, user: TestUser, files: Sequence[tuple[str, bytes]]
) -> list[str]:
    """Upload Markdown files and wait until each is ready; their ids."""
    ids = []
    for name, content in files:
        response = await upload(client, user, name, content, "text/markdown")
        assert response.status_code == 201, response.text
        ids.append(response.json()["data"]["id"])
    for file_id in ids:
        assert (await settled(client, user, file_id))["status"] == "ready"
    return ids


def unit_vectors(rng: np.random.Generator, count: int, dimension: int) -> np.ndarray:
    """Random unit vectors, float32."""
    matrix = rng.standard_normal((count, dimension)).astype(np.float32)
    normalized: np.ndarray = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    return normalized


async def seed_chunks(
    database: Database,
    owner_id: uuid.UUID,
    vectors: np.ndarray,
    *,
    model_id: str,
    per_file: int = 50,
) -> list[tuple[uuid.UUID, list[uuid.UUID]]]:
    """Ready files of `per_file` chunks each with these vectors (by `repository.add_chunks`, as
    ingestion writes them); each file's id and its chunks' ids, in order."""
    files: list[tuple[uuid.UUID, list[uuid.UUID]]] = []
    async with database.sessionmaker() as session:
        for first in range(0, len(vectors), per_file):
            batch = vectors[first : first + per_file]
            stored = StoredFile(
                id=new_id(),
                owner_id=owner_id,
                filename=f"synthetic-{first}.md",
                media_type="text/markdown",
                size_bytes=1,
                sha256=uuid.uuid4().hex * 2,
                status=READY,
                progress=1.0,
                chunks=len(batch),
                embedding_model=model_id,
            )
            session.add(stored)
            await session.flush()
            chunks = [
                KnowledgeChunk(
                    owner_id=owner_id,
                    file_id=stored.id,
                    ordinal=index,
                    page=None,
                    heading=None,
                    start_offset=0,
                    end_offset=10,
                    text=f"synthetic passage {first + index}",
                    embedding_model=model_id,
                    dimension=vectors.shape[1],
                    embedding=np.asarray(vector, dtype="<f4").tobytes(),
                )
                for index, vector in enumerate(batch)
            ]
            await repository.add_chunks(session, chunks)
            files.append((stored.id, [chunk.id for chunk in chunks]))
        await session.commit()
    return files


def ids_of(hits: Sequence[ChunkHit]) -> list[uuid.UUID]:
    """The chunk ids of search hits, in order."""
    return [hit.chunk_id for hit in hits]


def assert_same_ranking(exact: Sequence[ChunkHit], other: Sequence[ChunkHit]) -> None:
    """The same chunks with the same similarities rank by rank (float32 arithmetic apart: tied
    chunks may swap places)."""
    assert set(ids_of(other)) == set(ids_of(exact))
    assert [hit.score for hit in other] == pytest.approx([hit.score for hit in exact], abs=1e-5)


async def explain(
    session: AsyncSession, statement: Select[Any], *, only_index: bool = False
) -> str:
    """PostgreSQL's plan of `statement` (its parameters written in), in the session's
    transaction (so its `SET LOCAL`s apply). `only_index` turns off sequential scans and sorts,
    so the plan says whether an index can serve the query at all, however few its rows."""
    connection = await session.connection()
    if only_index:
        await connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        await connection.exec_driver_sql("SET LOCAL enable_sort = off")
    sql = statement.compile(dialect=connection.dialect, compile_kwargs={"literal_binds": True})
    rows = await connection.exec_driver_sql(f"EXPLAIN {sql}")
    return "\n".join(str(row[0]) for row in rows)


# -- PostgreSQL with pgvector ---------------------------------------------------------------


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[EmbeddedPostgres]:
    """An embedded PostgreSQL 18 with pgvector on a loopback port (one per xdist worker)."""
    try:
        server = EmbeddedPostgres.start()
    except EmbeddedPostgresUnavailable as exc:
        if os.environ.get("PARLEY_REQUIRE_PGVECTOR") == "1":  # set by .ci/run
            pytest.fail(f"PARLEY_REQUIRE_PGVECTOR=1 but no embedded pgvector server: {exc}")
        pytest.skip(f"no embedded PostgreSQL with pgvector here: {exc}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pgvector_url(pgvector_server: EmbeddedPostgres) -> str:
    """A migrated database on the pgvector server (the migration creates the extension)."""
    asyncio.run(recreate_postgres_database(pgvector_server.url(), PGVECTOR_DATABASE, create=True))
    url = pgvector_server.url(PGVECTOR_DATABASE)
    migrate.upgrade(Settings(_env_file=None, database_url=url))
    return url


@pytest.fixture(scope="session")
async def pgvector_app(
    pgvector_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FastAPI]:
    """An app on the pgvector database, its lifespan running for the session."""
    application = create_app(make_settings(pgvector_url, tmp_path_factory.mktemp("pgvector")))
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def pgvector_client(pgvector_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the pgvector app; the app's tables are emptied after the test."""
    transport = httpx.ASGITransport(app=pgvector_app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http
    finally:
        await empty_tables(pgvector_app)


@pytest.fixture
async def pgvector_worker(pgvector_app: FastAPI) -> AsyncIterator[Worker]:
    """Parley's worker on the pgvector app (ingestion as in production)."""
    running = build_worker(pgvector_app.state.runtime)
    running.poll_seconds = 0.1
    running.start()
    yield running
    await running.stop(grace_seconds=0)


async def nearest_by_each(
    application: FastAPI,
    owner_id: uuid.UUID,
    query: np.ndarray,
    backends: Sequence[str],
    *,
    model_id: str,
    dimension: int,
    file_ids: list[uuid.UUID] | None = None,
    limit: int = 10,
) -> list[list[ChunkHit]]:
    """The nearest chunks to `query` by each backend (the same question to each)."""
    found = []
    for backend in backends:
        async with application.state.database.sessionmaker() as session:
            found.append(
                await nearest_chunks(
                    session,
                    owner_id,
                    query,
                    model_id=model_id,
                    dimension=dimension,
                    file_ids=file_ids,
                    limit=limit,
                    backend=backend,
                )
            )
    return found
