"""Fixtures for the web page's end-to-end tests: one headless Chromium per test session (Debian's
`chromium`, driven by Playwright), a real Parley server on loopback whose catalog holds the offline
model and a fake OpenAI model (priced, so replies have a cost), accounts made through the API, and
pages already signed in.

The browser is `/usr/bin/chromium` (or `PARLEY_CHROMIUM`). Without it these tests skip, unless
`PARLEY_REQUIRE_BROWSER=1` (set by `.ci/run`), which makes them fail instead. Screenshots go to
`test-results/screenshots/<db>/` (or `PARLEY_SCREENSHOT_DIR`).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from playwright.async_api import Browser, Page, async_playwright

from parley.background import build_worker
from parley.runtime import open_runtime
from tests.fakes import Script
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fixtures.catalogs import seed_for
from tests.fixtures.servers import LiveServer, start_live_server, stop_live_server
from tests.fixtures.web import (
    CHROMIUM,
    FAST_PACE_MS,
    LAUNCH_ARGS,
    OpenPage,
    Shoot,
    WebServer,
    wait_until_quiet,
    web_settings,
)


@pytest.fixture(scope="session")
def chromium_path() -> Path:
    """The Chromium binary; a skip (or, in CI, a failure) when it is not installed."""
    if CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    reason = f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if os.environ.get("PARLEY_REQUIRE_BROWSER") == "1":
        pytest.fail(f"PARLEY_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
async def browser(chromium_path: Path) -> AsyncIterator[Browser]:
    """One headless Chromium for the whole session (each test gets its own context)."""
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=str(chromium_path), args=LAUNCH_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture(scope="session")
def screenshot_dir(db_kind: str, pytestconfig: pytest.Config) -> Path:
    base = os.environ.get("PARLEY_SCREENSHOT_DIR")
    root = Path(base) if base else Path(pytestconfig.rootpath) / "test-results" / "screenshots"
    directory = root / db_kind
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(scope="session")
def fake_openai() -> Iterator[FakeOpenAI]:
    fake = FakeOpenAI.start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="session")
def web_live(
    database_url: str, tmp_path_factory: pytest.TempPathFactory, fake_openai: FakeOpenAI
) -> Iterator[LiveServer]:
    """A real Parley server (uvicorn on loopback) on the session's database."""
    live = start_live_server(
        web_settings(database_url, tmp_path_factory.mktemp("web"), fake_openai)
    )
    try:
        yield live
    finally:
        stop_live_server(live)


@pytest.fixture
async def server(
    web_live: LiveServer, app: FastAPI, fake_openai: FakeOpenAI
) -> AsyncIterator[WebServer]:
    """The web server, its catalog seeded for this test (every test leaves empty tables) and
    the offline model at its fast pace."""
    await seed_for(app, web_live.app.state.settings)
    fake_openai.script = Script()
    async with httpx.AsyncClient(base_url=web_live.url, timeout=30) as http:
        web = WebServer(web_live, http, fake_openai)
        web.pace(FAST_PACE_MS)
        try:
            yield web
        finally:
            web.pace(FAST_PACE_MS)
            await wait_until_quiet(web_live, app)


@pytest.fixture
async def web_worker(server: WebServer) -> AsyncIterator[None]:
    """A worker on the web server's settings (its database and data directory), in the test's
    event loop, as `parley worker` runs beside the web server in a deployment: it runs the jobs
    (files read, titles, reminders) and the relay that numbers committed events, which the live
    feed (`GET /api/events`) carries to the page."""
    async with open_runtime(server.live.app.state.settings) as runtime:
        worker = build_worker(runtime)
        worker.poll_seconds = 0.1
        worker.start()
        try:
            yield
        finally:
            await worker.stop(grace_seconds=0)


@pytest.fixture
async def open_page(browser: Browser, server: WebServer) -> AsyncIterator[OpenPage]:
    """Opens pages (see `OpenPage`); at the end of the test, every page must have run without
    an uncaught error, a CSP violation or a dialog."""
    opener = OpenPage(browser, server)
    try:
        yield opener
    finally:
        await opener.close()
    for watch in opener.watches.values():
        watch.check()


@pytest.fixture
def shoot(screenshot_dir: Path) -> Shoot:
    """`await shoot(page, "name")`: save a screenshot as `<screenshot dir>/<name>.png`."""

    async def take(page: Page, name: str) -> Path:
        path = screenshot_dir / f"{name}.png"
        await page.screenshot(path=str(path))
        return path

    return take
