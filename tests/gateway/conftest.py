"""Fixtures for `/v1`: a live Parley whose catalog holds the offline model and models on the fake
OpenAI and Anthropic upstreams (real HTTP servers on loopback), API keys for test users, and the
official `openai` SDK pointed at it (helpers: `tests.fixtures.gateway` and `.catalogs`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI
from tests.fakes import Script
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FaultyOpenAI
from tests.fakes.upstreams import running_upstreams
from tests.fixtures.accounts import TestUser, create_api_key
from tests.fixtures.catalogs import gateway_settings, seed_for
from tests.fixtures.gateway import sdk
from tests.fixtures.servers import (
    LiveServer,
    start_live_server_off_loop,
    stop_live_server_off_loop,
)


@pytest.fixture(scope="session")
def gateway_fakes() -> Iterator[tuple[FaultyOpenAI, FakeAnthropic]]:
    with running_upstreams() as fakes:
        yield fakes


@pytest.fixture(scope="session")
async def gateway_live(
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    gateway_fakes: tuple[FaultyOpenAI, FakeAnthropic],
) -> AsyncIterator[LiveServer]:
    """A live Parley over the fakes."""
    settings = gateway_settings(database_url, tmp_path_factory.mktemp("gateway"), gateway_fakes)
    live = await start_live_server_off_loop(settings)
    try:
        yield live
    finally:
        await stop_live_server_off_loop(live)


@pytest.fixture
async def fakes(
    app: FastAPI, gateway_live: LiveServer, gateway_fakes: tuple[FaultyOpenAI, FakeAnthropic]
) -> tuple[FaultyOpenAI, FakeAnthropic]:
    """The fakes, reset, with the catalog seeded for this test."""
    openai_fake, anthropic_fake = gateway_fakes
    openai_fake.reset()
    anthropic_fake.script = Script()
    await seed_for(app, gateway_live.app.state.settings)
    return openai_fake, anthropic_fake


@pytest.fixture
def openai_fake(fakes: tuple[FaultyOpenAI, FakeAnthropic]) -> FaultyOpenAI:
    return fakes[0]


@pytest.fixture
def anthropic_fake(fakes: tuple[FaultyOpenAI, FakeAnthropic]) -> FakeAnthropic:
    return fakes[1]


@pytest.fixture
async def api_key(client: httpx.AsyncClient, user: TestUser) -> str:
    return await create_api_key(client, user)


@pytest.fixture
async def oai(
    gateway_live: LiveServer, api_key: str, fakes: Any
) -> AsyncIterator[openai.AsyncOpenAI]:
    """The SDK on the live gateway with the user's API key (catalog seeded)."""
    client = sdk(f"{gateway_live.url}/v1", api_key)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def raw(gateway_live: LiveServer, fakes: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A plain HTTP client on the live gateway."""
    async with httpx.AsyncClient(base_url=gateway_live.url, timeout=30) as http:
        yield http
