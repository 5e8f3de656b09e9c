"""The worker's catalog cache: lookups served from memory, an admin's change seen at once through
the API, another worker's change within `CATALOG_CACHE_SECONDS`."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, update

from parley.llm.cache import CatalogCache
from parley.llm.models import CatalogModel
from parley.llm.service import LLMService, ModelUnavailable
from tests.fixtures.accounts import TestUser
from tests.fixtures.catalogs import Seeder

TWO_OPENAI = {"openai_api_key": "sk-test", "openai_models": ["gpt-a", "gpt-b"]}


class StatementCounter:
    """Counts the statements an engine runs while it is attached."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, *_args: Any) -> None:
        self.count += 1


@pytest.fixture
def statements(app: FastAPI) -> Iterator[StatementCounter]:
    counter = StatementCounter()
    engine = app.state.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", counter)
    try:
        yield counter
    finally:
        event.remove(engine, "before_cursor_execute", counter)


async def test_lookups_are_served_from_memory(
    app: FastAPI, seed: Seeder, statements: StatementCounter
) -> None:
    await seed(**TWO_OPENAI)
    async with app.state.database.sessionmaker() as session:
        llm = LLMService(session, app.state.model_providers, CatalogCache(60))
        before = statements.count
        assert (await llm.resolve("openai:gpt-a")).model_name == "gpt-a"
        loaded = statements.count
        assert loaded == before + 1
        for _ in range(5):
            assert (await llm.resolve("openai:gpt-b")).model_name == "gpt-b"
            assert (await llm.resolve(None)).id == "openai:gpt-a"
            assert [entry.id for entry in await llm.list_enabled()] == [
                "openai:gpt-a",
                "openai:gpt-b",
                "offline:parley",
            ]
        assert statements.count == loaded


async def test_without_a_cache_every_lookup_reads_the_table(
    app: FastAPI, seed: Seeder, statements: StatementCounter
) -> None:
    await seed(**TWO_OPENAI)
    async with app.state.database.sessionmaker() as session:
        llm = LLMService(session, app.state.model_providers, CatalogCache(0))
        for _ in range(3):
            before = statements.count
            await llm.resolve("openai:gpt-a")
            assert statements.count == before + 1


async def test_another_workers_change_is_seen_once_the_snapshot_is_stale(
    app: FastAPI, seed: Seeder
) -> None:
    await seed(**TWO_OPENAI)
    cache = CatalogCache(0.5)
    async with app.state.database.sessionmaker() as session:
        llm = LLMService(session, app.state.model_providers, cache)
        assert (await llm.resolve("openai:gpt-b")).enabled
        loaded_at = time.monotonic()
        # Another process disables the model: this one is not told.
        await session.execute(
            update(CatalogModel)
            .where(CatalogModel.model_id == "openai:gpt-b")
            .values(enabled=False)
        )
        await session.commit()
        if time.monotonic() - loaded_at < 0.4:
            assert (await llm.resolve("openai:gpt-b")).enabled  # the snapshot still serves
        await anyio.sleep(0.6)
        with pytest.raises(ModelUnavailable):
            await llm.resolve("openai:gpt-b")


async def test_an_admins_change_is_seen_at_once_on_v1(
    app: FastAPI, client: httpx.AsyncClient, seed: Seeder, user: TestUser, admin: TestUser
) -> None:
    await seed(**TWO_OPENAI)
    assert app.state.catalog_cache.ttl_seconds >= 1  # the change below is not waited out

    async def v1_models() -> list[str]:
        response = await client.get("/v1/models", headers=user.headers)
        assert response.status_code == 200, response.text
        return [model["id"] for model in response.json()["data"]]

    assert "openai:gpt-b" in await v1_models()
    response = await client.patch(
        "/api/admin/models/openai:gpt-b", json={"enabled": False}, headers=admin.headers
    )
    assert response.status_code == 200, response.text
    assert "openai:gpt-b" not in await v1_models()
    answer = await client.post(
        "/v1/chat/completions",
        json={"model": "openai:gpt-b", "messages": [{"role": "user", "content": "hi"}]},
        headers=user.headers,
    )
    assert answer.status_code == 404, answer.text
    assert answer.json()["error"]["code"] == "model_not_found"
