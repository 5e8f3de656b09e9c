"""Fixtures for the model catalog and provider tests: the fake upstreams (one server each per
session, reset for every test), settings with no provider leaking in from the environment, and a
catalog seeded before each test (the shared `_clean_state` empties every table after each one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI

from parley.llm.catalog_config import CatalogPlan, plan_catalog
from parley.llm.seeding import seed_catalog
from parley.settings import Settings
from tests.fakes import Script
from tests.fakes.anthropic_upstream import DEFAULT_MODELS as ANTHROPIC_MODELS
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import DEFAULT_MODELS as OPENAI_MODELS
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fixtures.catalogs import Seeder
from tests.fixtures.settings import NO_PROVIDERS, SettingsFactory, make_settings


@pytest.fixture
def llm_settings(database_url: str, tmp_path: Path) -> SettingsFactory:
    """`llm_settings(**overrides)`: test settings on the session database, no provider unless
    the overrides configure one."""

    def factory(**overrides: Any) -> Settings:
        return make_settings(database_url, tmp_path, **{**NO_PROVIDERS, **overrides})

    return factory


@pytest.fixture
def seed(app: FastAPI, llm_settings: SettingsFactory) -> Seeder:
    """`await seed(**settings_overrides)`: seed the session app's catalog as these settings
    describe it (no discovery: give `*_MODELS` for a provider)."""

    async def factory(**overrides: Any) -> CatalogPlan:
        plan = plan_catalog(llm_settings(**overrides))
        async with app.state.database.sessionmaker() as session:
            await seed_catalog(session, plan)
        return plan

    return factory


@pytest.fixture(autouse=True)
async def _offline_catalog(seed: Seeder) -> None:
    """Every test starts with the catalog a fresh install has: the offline model alone."""
    await seed()


@pytest.fixture(scope="session")
def _openai_server() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake_openai(_openai_server: FakeOpenAI) -> FakeOpenAI:
    """The fake OpenAI-compatible server, with no script, no requests and its default models."""
    _openai_server.script = Script()
    _openai_server.models = list(OPENAI_MODELS)
    _openai_server.models_status = 200
    return _openai_server


@pytest.fixture(scope="session")
def _anthropic_server() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def fake_anthropic(_anthropic_server: FakeAnthropic) -> FakeAnthropic:
    """The fake Anthropic server, with no script, no requests and its default models."""
    _anthropic_server.script = Script()
    _anthropic_server.models = list(ANTHROPIC_MODELS)
    return _anthropic_server
