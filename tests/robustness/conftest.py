"""Fixtures of the robustness suite: live servers on the session's database (real uvicorn on
loopback, since streams, disconnects and concurrency need real connections), the `soak` marker
(benchmark-length runs, only with `--soak`), and helpers to read replies and wait for them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from parley.llm.catalog_config import plan_catalog
from parley.llm.seeding import seed_catalog
from tests.conftest import (
    LiveServer,
    TestUser,
    make_settings,
    start_live_server,
    stop_live_server,
)

# The offline model's pause between words: short, so replies take well under a second, yet long
# enough that a reply is still running when a test looks at it mid-way.
FAST_DELAY_MS = 2
SLOW_DELAY_MS = 150


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "soak: benchmark-length robustness runs, only with --soak (docs/robustness.md)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--soak"):
        return
    skip = pytest.mark.skip(reason="a benchmark-length soak: run with --soak")
    for item in items:
        if "soak" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
async def _offline_catalog(app: FastAPI) -> None:
    """The catalog as a server on the offline model seeds it at start (every test empties the
    tables after it, the catalog's included)."""
    async with app.state.database.sessionmaker() as session:
        await seed_catalog(session, plan_catalog(app.state.settings))


def live_settings(database_url: str, data_dir: Path, **overrides: Any) -> Any:
    """Test settings for a live server on the offline model (no provider configured)."""
    values: dict[str, Any] = {
        "offline_model_delay_ms": FAST_DELAY_MS,
        "stream_save_interval_ms": 100,
        "openai_api_key": None,
        "openai_base_url": None,
        "openai_models": [],
        "anthropic_api_key": None,
        "anthropic_models": [],
        "gemini_api_key": None,
        "gemini_models": [],
        "models_file": None,
        "default_model": None,
    }
    values.update(overrides)
    return make_settings(database_url, data_dir, **values)


@pytest.fixture(scope="session")
def robust_live(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A live server on the offline model with fast replies (shared by the session's tests)."""
    live = start_live_server(live_settings(database_url, tmp_path_factory.mktemp("robust")))
    try:
        yield live
    finally:
        stop_live_server(live)


@pytest.fixture(scope="session")
def slow_live(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A live server whose offline replies take seconds, so a reply is in progress while a test
    acts on it."""
    settings = live_settings(
        database_url, tmp_path_factory.mktemp("slow"), offline_model_delay_ms=SLOW_DELAY_MS
    )
    live = start_live_server(settings)
    try:
        yield live
    finally:
        stop_live_server(live)


async def wait_until(
    condition: Callable[[], Awaitable[Any]], *, within: float = 20.0, interval: float = 0.05
) -> Any:
    """Poll an async condition until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not come true in time")
        await asyncio.sleep(interval)


async def branch(http: httpx.AsyncClient, owner: TestUser, chat_id: str) -> list[dict[str, Any]]:
    """The messages on a chat's current branch, oldest first."""
    response = await http.get(
        f"/api/chats/{chat_id}/messages", params={"limit": 100}, headers=owner.headers
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["data"]["items"]
    return items


def text_of(message: dict[str, Any]) -> str:
    """The text parts of a message, joined."""
    return "".join(part.get("text", "") for part in message["parts"] if part["type"] == "text")


def assert_envelope_error(response: httpx.Response, status: int | tuple[int, ...]) -> str:
    """The response is an enveloped error with one of the statuses; its code."""
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    body = response.json()
    assert set(body) == {"trace_id", "error"}, body
    assert len(body["trace_id"]) == 32
    code: str = body["error"]["code"]
    return code
