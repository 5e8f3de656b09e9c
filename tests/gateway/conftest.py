"""Fixtures for `/v1`: a live Parley whose catalog holds the offline model and models on the fake
OpenAI and Anthropic upstreams (real HTTP servers on loopback), API keys for test users, and the
official `openai` SDK pointed at it."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import uvicorn
from fastapi import FastAPI
from tests.conftest import LiveServer, TestUser, free_port, stop_live_server
from tests.fakes import Script
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.turns.conftest import ANTHROPIC_MODEL, OPENAI_MODEL, FaultyOpenAI, upstream_settings

from parley.app import create_app
from parley.llm.catalog_config import load_models_file, plan_catalog
from parley.llm.seeding import seed_catalog
from parley.settings import Settings

__all__ = ["ANTHROPIC_MODEL", "OFFLINE_MODEL", "OPENAI_MODEL"]

OFFLINE_MODEL = "offline:parley"
READ_TIMEOUT_SECONDS = 1.0
START_ATTEMPTS = 3
START_TIMEOUT_SECONDS = 20.0


def _serve_once(settings: Settings) -> LiveServer | None:
    application = create_app(settings)
    config = uvicorn.Config(
        application,
        host="127.0.0.1",
        port=free_port(),
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)

    def run() -> None:
        # uvicorn exits its thread (SystemExit) when the app's start-up fails; that is answered
        # by trying again below, not left to the thread's excepthook.
        try:
            server.run()
        except SystemExit:
            return

    thread = threading.Thread(target=run, name=f"gateway-{config.port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            thread.join(timeout=15)
            return None
        time.sleep(0.02)
    return LiveServer(f"http://127.0.0.1:{config.port}", application, server, thread)


def _start_with_retries(settings: Settings) -> LiveServer:
    for _ in range(START_ATTEMPTS):
        live = _serve_once(settings)
        if live is not None:
            return live
        time.sleep(0.5)
    raise RuntimeError("the live gateway server did not start")


async def start_gateway_server(settings: Settings) -> LiveServer:
    """A live Parley like `start_live_server`'s, started from a thread so that the test's event
    loop keeps running meanwhile: the session app's background sweep may hold an SQLite write
    transaction that only this loop can finish, and the new server's start-up (seeding the
    catalog) waits for it. A start-up that fails all the same is tried again."""
    return await asyncio.to_thread(_start_with_retries, settings)


async def stop_gateway_server(live: LiveServer) -> None:
    """Stop a server from `start_gateway_server` (from a thread, for the same reason)."""
    await asyncio.to_thread(stop_live_server, live)


@pytest.fixture(scope="session")
def gateway_fakes() -> Iterator[tuple[FaultyOpenAI, FakeAnthropic]]:
    openai_fake = FaultyOpenAI.start()
    anthropic_fake = FakeAnthropic.start()
    try:
        yield openai_fake, anthropic_fake
    finally:
        openai_fake.stop()
        anthropic_fake.stop()


def gateway_settings(
    database_url: str,
    data_dir: Path,
    fakes: tuple[FaultyOpenAI, FakeAnthropic],
    **extra: Any,
) -> Settings:
    """Settings whose catalog holds the fakes' models; short provider timeouts, one retry."""
    values: dict[str, Any] = {
        "provider_read_timeout_seconds": READ_TIMEOUT_SECONDS,
        "provider_max_retries": 1,
        "offline_model_delay_ms": 0,
    }
    values.update(extra)
    return upstream_settings(database_url, data_dir, fakes, **values)


@pytest.fixture(scope="session")
async def gateway_live(
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    gateway_fakes: tuple[FaultyOpenAI, FakeAnthropic],
) -> AsyncIterator[LiveServer]:
    """A live Parley over the fakes."""
    settings = gateway_settings(database_url, tmp_path_factory.mktemp("gateway"), gateway_fakes)
    live = await start_gateway_server(settings)
    try:
        yield live
    finally:
        await stop_gateway_server(live)


async def seed_for(app: FastAPI, settings: Settings) -> None:
    """Seed the (shared) database's catalog as `settings` configure it; the tables are emptied
    after every test."""
    assert settings.models_file is not None
    plan = plan_catalog(settings, file_entries=load_models_file(settings.models_file))
    async with app.state.database.sessionmaker() as session:
        await seed_catalog(session, plan)


@pytest.fixture
async def fakes(
    app: FastAPI, gateway_live: LiveServer, gateway_fakes: tuple[FaultyOpenAI, FakeAnthropic]
) -> tuple[FaultyOpenAI, FakeAnthropic]:
    """The fakes, reset, with the catalog seeded for this test."""
    openai_fake, anthropic_fake = gateway_fakes
    openai_fake.script = Script()
    anthropic_fake.script = Script()
    openai_fake.cut_after_chunks = None
    openai_fake.stall_after_chunks = None
    openai_fake.hung_up_at.clear()
    openai_fake.finished_at.clear()
    await seed_for(app, gateway_live.app.state.settings)
    return openai_fake, anthropic_fake


@pytest.fixture
def openai_fake(fakes: tuple[FaultyOpenAI, FakeAnthropic]) -> FaultyOpenAI:
    return fakes[0]


@pytest.fixture
def anthropic_fake(fakes: tuple[FaultyOpenAI, FakeAnthropic]) -> FakeAnthropic:
    return fakes[1]


async def create_api_key(client: httpx.AsyncClient, user: TestUser, name: str = "sdk") -> str:
    """A new API key of `user` (its secret)."""
    response = await client.post(
        "/api/users/me/api-keys", json={"name": name}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    secret = response.json()["data"]["key"]
    assert isinstance(secret, str)
    assert secret.startswith("pk_")
    return secret


@pytest.fixture
async def api_key(client: httpx.AsyncClient, user: TestUser) -> str:
    return await create_api_key(client, user)


def sdk(base_url: str, key: str, **options: Any) -> openai.AsyncOpenAI:
    """The official SDK on `base_url` (`.../v1`), without retries so each call is one request."""
    return openai.AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, **options)


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


async def usage_records(
    client: httpx.AsyncClient, user: TestUser, *, expected: int | None = None
) -> list[dict[str, Any]]:
    """The user's `/v1` usage records, newest first (waits a little for `expected` of them: a
    stream settles just after its last byte)."""
    for _ in range(100):
        response = await client.get(
            "/api/usage/records", params={"source": "v1", "limit": 100}, headers=user.headers
        )
        assert response.status_code == 200, response.text
        items: list[dict[str, Any]] = response.json()["data"]["items"]
        if expected is None or len(items) >= expected:
            return items
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {expected} usage records, found {len(items)}")
