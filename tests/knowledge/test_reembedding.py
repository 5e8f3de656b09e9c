"""Changing `EMBEDDING_MODEL`: files ingested with the offline model, then an app restarted on a
second catalog embedding model (a fake OpenAI-compatible embeddings server on loopback, whose
vectors have another length). Until a file is embedded again its passages answer by keyword only
and its old vectors are never compared with the new model's; one file re-embedded, vector search
finds its passages only; the worker's sweep then re-embeds the rest, and every chunk ends up the
new model's, of its dimension. On the test database (SQLite or PostgreSQL) and on PostgreSQL
with pgvector, where the new model gets its own HNSW index (here `halfvec`: its vectors are
longer than `vector`'s HNSW limit) and the planner can serve its queries from it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select, text

from parley.background import build_worker
from parley.files.models import StoredFile
from parley.jobs.queue import enqueue
from parley.jobs.worker import Worker
from parley.knowledge import vectors
from parley.knowledge.ingestion import REEMBED_SWEEP_JOB, Ingestion
from parley.knowledge.models import KnowledgeChunk
from parley.knowledge.nearest import pgvector_statement
from parley.knowledge.search import vector_search
from parley.llm.schemas import OFFLINE_EMBEDDING_MODEL_ID
from parley.settings import Settings
from tests.fakes.embedding_upstreams import FakeOpenAIEmbeddings
from tests.fixtures.apps import running_app
from tests.fixtures.polling import wait_for
from tests.fixtures.settings import NO_PROVIDERS, make_settings
from tests.knowledge.conftest import explain, ingest_markdown, register, search
from tests.knowledge.test_knowledge_api import BIKES, BREAD

NEW_MODEL = "openai:text-embedding-fake"
OLD_DIMENSION = 384
OFFLINE = OFFLINE_EMBEDDING_MODEL_ID


@dataclass
class _Job:
    """A `files.reembed` job as its handler sees it, run here rather than by a worker."""

    args: Mapping[str, Any]
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    kind: str = "files.reembed"
    attempt: int = 1
    max_attempts: int = 1

    async def progress(self, fraction: float) -> None:
        """Nothing: no worker holds this job."""


@pytest.fixture(scope="module")
def embeddings_server() -> Iterator[FakeOpenAIEmbeddings]:
    fake = FakeOpenAIEmbeddings.start()
    try:
        yield fake
    finally:
        fake.stop()


def _new_model_settings(url: str, data_dir: Path, fake: FakeOpenAIEmbeddings) -> Settings:
    return make_settings(
        url,
        data_dir,
        **{
            **NO_PROVIDERS,
            "openai_api_key": "sk-embed",
            "openai_base_url": fake.base_url,
            "openai_models": ["gpt-unused"],  # no model list to ask the fake for
            "embedding_model": NEW_MODEL,
            "provider_max_retries": 0,
        },
    )


async def _chunks(application: FastAPI) -> dict[uuid.UUID, tuple[uuid.UUID, str, int, int]]:
    """Every chunk: its file, model, dimension and the length of its bytes."""
    async with application.state.database.sessionmaker() as session:
        rows = await session.execute(
            select(
                KnowledgeChunk.id,
                KnowledgeChunk.file_id,
                KnowledgeChunk.embedding_model,
                KnowledgeChunk.dimension,
                func.length(KnowledgeChunk.embedding),
            )
        )
        return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}


async def _nearest_files(application: FastAPI, owner_id: uuid.UUID, query: str) -> set[uuid.UUID]:
    """The files of the chunks vector search finds with the app's embedding model."""
    embedder = application.state.runtime.embeddings.default()
    async with application.state.database.sessionmaker() as session:
        hits = await vector_search(session, owner_id, query, embedder, file_ids=None, limit=50)
    chunks = await _chunks(application)
    return {chunks[hit.chunk_id][0] for hit in hits}


async def _assert_served_by_the_index(
    application: FastAPI, owner_id: uuid.UUID, model_id: str, dimension: int
) -> None:
    """The model's HNSW index exists and can serve its vector query (a handful of rows: the
    planner is kept from the scan and the sort it would rather do for so few)."""
    embedder = application.state.runtime.embeddings.default()
    [query] = await embedder.embed(["oil the chain"], purpose="query")
    statement = pgvector_statement(
        owner_id, query, model_id=model_id, dimension=dimension, file_ids=None, limit=50
    )
    async with application.state.database.sessionmaker() as session:
        plan = await explain(session, statement, only_index=True)
    assert f"Index Scan using {vectors.index_name(model_id, dimension)}" in plan, plan


async def _change_the_model(
    first: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    url: str,
    data_dir: Path,
    fake: FakeOpenAIEmbeddings,
) -> None:
    user = await register(client)
    owner_id = uuid.UUID(user.id)
    bikes, bread = (
        uuid.UUID(file_id)
        for file_id in await ingest_markdown(
            client, user, [("bikes.md", BIKES), ("bread.md", BREAD)]
        )
    )
    await worker.stop(grace_seconds=0)  # the old model's worker is gone: a restart
    assert {model for _, model, _, _ in (await _chunks(first)).values()} == {OFFLINE}
    pgvector = await vectors.vector_backend(first.state.database.engine) == vectors.PGVECTOR

    async with running_app(_new_model_settings(url, data_dir, fake)) as (second, new_client):
        # Nothing embedded by the new model yet: no vector hits, and keyword search answers.
        assert await _nearest_files(second, owner_id, "covered pot uncover") == set()
        by_words = await search(new_client, user, "covered pot uncover")
        assert by_words[0]["heading"] == "Baking"
        assert fake.script.requests, "the query was not embedded by the new model"

        # One file embedded again: the new model's vectors are its only, the old model's the
        # other file's only, and keyword search still finds the other file's passages.
        settings = second.state.settings
        ingestion = Ingestion(
            second.state.database,
            settings,
            second.state.runtime.embeddings,
            second.state.runtime.extractor,
        )
        await ingestion.reembed(_Job({"file_id": str(bikes)}))
        chunks = await _chunks(second)
        for file_id, model, dimension, length in chunks.values():
            new = file_id == bikes
            expected = (NEW_MODEL, fake.dimension) if new else (OFFLINE, OLD_DIMENSION)
            assert (model, dimension, length) == (*expected, expected[1] * 4)
        assert await _nearest_files(second, owner_id, "oil the chain") == {bikes}
        assert await _nearest_files(first, owner_id, "oil the chain") == {bread}
        # (The re-embedded file's vector hits weigh more than a keyword hit: the fake's vectors
        # mean nothing, so they only rank among themselves.)
        by_words = await search(new_client, user, "covered pot uncover")
        baking = [hit for hit in by_words if hit["heading"] == "Baking"]
        assert baking
        assert baking[0]["file_id"] == str(bread)

        # The worker's sweep re-embeds the rest.
        new_worker = build_worker(second.state.runtime)
        new_worker.poll_seconds = 0.1
        new_worker.start()
        try:
            async with second.state.database.sessionmaker() as session:
                await enqueue(session, REEMBED_SWEEP_JOB, {})
                await session.commit()

            async def all_reembedded() -> bool:
                async with second.state.database.sessionmaker() as session:
                    models = set(
                        (await session.execute(select(StoredFile.embedding_model))).scalars()
                    )
                return models == {NEW_MODEL}

            await wait_for(all_reembedded, within=30)
        finally:
            await new_worker.stop(grace_seconds=0)
        chunks = await _chunks(second)
        assert {(model, dimension, length) for _, model, dimension, length in chunks.values()} == {
            (NEW_MODEL, fake.dimension, fake.dimension * 4)
        }
        assert await _nearest_files(second, owner_id, "oil the chain") == {bikes, bread}
        assert await _nearest_files(first, owner_id, "oil the chain") == set()
        if pgvector:
            async with second.state.database.engine.connect() as connection:
                dims = set(
                    (
                        await connection.execute(
                            text("SELECT DISTINCT vector_dims(embedding_vec) FROM knowledge_chunks")
                        )
                    ).scalars()
                )
            assert dims == {fake.dimension}
            await _assert_served_by_the_index(second, owner_id, NEW_MODEL, fake.dimension)


async def test_changing_the_embedding_model_on_the_test_database(
    app: FastAPI,
    client: httpx.AsyncClient,
    worker: Worker,
    database_url: str,
    tmp_path: Path,
    embeddings_server: FakeOpenAIEmbeddings,
) -> None:
    embeddings_server.reset()
    await _change_the_model(app, client, worker, database_url, tmp_path, embeddings_server)


async def test_changing_the_embedding_model_with_pgvector(
    pgvector_app: FastAPI,
    pgvector_client: httpx.AsyncClient,
    pgvector_worker: Worker,
    pgvector_url: str,
    tmp_path: Path,
    embeddings_server: FakeOpenAIEmbeddings,
) -> None:
    embeddings_server.reset()
    embeddings_server.dimension = 2100  # past vector's 2,000: a halfvec index
    await _change_the_model(
        pgvector_app, pgvector_client, pgvector_worker, pgvector_url, tmp_path, embeddings_server
    )
    assert vectors.index_type(2100) == "halfvec"
