"""Fixtures of the robustness suite: live servers on the session's database (real uvicorn on
loopback, since streams, disconnects and concurrency need real connections), the `soak` marker
(benchmark-length runs, only with `--soak`) and the offline catalog seeded for every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI

from parley.llm.catalog_config import plan_catalog
from parley.llm.seeding import seed_catalog
from tests.fixtures.servers import LiveServer, start_live_server, stop_live_server
from tests.fixtures.settings import SLOW_DELAY_MS, live_settings


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
