"""`LLMService`: what the chat engine asks of the catalog."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete

from parley.llm.cache import catalog_changed
from parley.llm.models import CatalogModel
from parley.llm.offline.model import OfflineModel
from parley.llm.service import LLMService, ModelUnavailable
from tests.fixtures.accounts import TestUser
from tests.fixtures.catalogs import Seeder


@pytest.fixture
async def llm(app: FastAPI) -> AsyncIterator[LLMService]:
    async with app.state.database.sessionmaker() as session:
        yield LLMService(session, app.state.model_providers, app.state.catalog_cache)


async def test_no_model_id_means_the_default(llm: LLMService, seed: Seeder) -> None:
    entry = await llm.resolve(None)
    assert (entry.id, entry.is_default) == ("offline:parley", True)
    assert isinstance(llm.model_for(entry), OfflineModel)
    await seed(openai_api_key="k", openai_models=["gpt-a"])
    assert (await llm.resolve(None)).id == "openai:gpt-a"


async def test_a_named_model_is_resolved(llm: LLMService, seed: Seeder) -> None:
    await seed(openai_api_key="k", openai_models=["gpt-4o-mini"])
    entry = await llm.resolve("openai:gpt-4o-mini")
    assert (entry.provider, entry.model_name, entry.is_default) == ("openai", "gpt-4o-mini", True)
    assert entry.cost_usd(1_000_000, 0) == entry.input_price_per_mtok
    assert [e.id for e in await llm.list_enabled()] == ["openai:gpt-4o-mini", "offline:parley"]


async def test_unknown_and_disabled_models_are_refused(
    llm: LLMService, client: httpx.AsyncClient, admin: TestUser, seed: Seeder
) -> None:
    await seed(openai_api_key="k", openai_models=["gpt-a", "gpt-b"])
    response = await client.patch(
        "/api/admin/models/openai:gpt-b", json={"enabled": False}, headers=admin.headers
    )
    assert response.status_code == 200
    for model_id in ("openai:gpt-b", "openai:nope", "nope"):
        with pytest.raises(ModelUnavailable) as raised:
            await llm.resolve(model_id, field="body.model")
        assert raised.value.status_code == 422
        assert raised.value.details == [
            {"field": "body.model", "message": "unknown or disabled model"}
        ]


async def test_an_empty_catalog_still_offers_the_offline_model(
    llm: LLMService, app: FastAPI
) -> None:
    async with app.state.database.sessionmaker() as session:
        await session.execute(delete(CatalogModel))
        await session.commit()
    catalog_changed()
    entry = await llm.resolve(None)
    assert entry.id == "offline:parley"
    assert await llm.resolve("offline:parley") == entry
    assert entry.input_price_per_mtok == Decimal(0)
    assert entry.cost_usd(10, 10) == 0
