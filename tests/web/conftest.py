"""Fixtures for the web page's end-to-end tests: one headless Chromium per test session (Debian's
`chromium`, driven by Playwright), a real Parley server on loopback whose catalog holds the offline
model and a fake OpenAI model (priced, so replies have a cost), accounts made through the API, and
pages already signed in.

The browser is `/usr/bin/chromium` (or `PARLEY_CHROMIUM`). Without it these tests skip, unless
`PARLEY_REQUIRE_BROWSER=1` (set by `.ci/run`), which makes them fail instead. Screenshots go to
`test-results/screenshots/<db>/` (or `PARLEY_SCREENSHOT_DIR`).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Dialog,
    Page,
    async_playwright,
    expect,
)
from sqlalchemy import func, select

from parley.chats.models import Message
from parley.llm.catalog_config import load_models_file, plan_catalog
from parley.llm.seeding import seed_catalog
from parley.settings import Settings
from tests.conftest import PASSWORD, LiveServer, make_settings, start_live_server, stop_live_server
from tests.fakes import Script
from tests.fakes.openai_upstream import FakeOpenAI

CHROMIUM = Path(os.environ.get("PARLEY_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
FAKE_MODEL = "openai:gpt-fake-large"
FAKE_MODEL_NAME = "Fake GPT"
OFFLINE_MODEL = "offline:parley"
MODELS_FILE = f"""
[[models]]
id = "{FAKE_MODEL}"
name = "{FAKE_MODEL_NAME}"
context_window = 8000
input_price_per_mtok = 2.0
output_price_per_mtok = 8.0
"""
FAST_PACE_MS = 2  # the offline model's pause between words, for most tests
SLOW_PACE_MS = 40  # for replies that are stopped midway (the offline introduction: ~4 s)
RELOAD_PACE_MS = 60  # for a reply that must outlast a page reload (~6 s)
SESSION_KEY = "parley.session"
WIDE = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}

expect.set_options(timeout=15_000)


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


def web_settings(database_url: str, data_dir: Path, fake: FakeOpenAI) -> Settings:
    """The offline model (the default) and a fake, priced OpenAI model."""
    models_file = data_dir / "models.toml"
    models_file.write_text(MODELS_FILE, encoding="utf-8")
    return make_settings(
        database_url,
        data_dir,
        openai_api_key="sk-test",
        openai_base_url=fake.base_url,
        openai_models=["gpt-fake-large"],
        anthropic_api_key=None,
        anthropic_models=[],
        gemini_api_key=None,
        gemini_models=[],
        models_file=models_file,
        default_model=OFFLINE_MODEL,
        offline_model_delay_ms=FAST_PACE_MS,
        stream_save_interval_ms=50,
    )


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


@dataclass
class Account:
    """A user made through the API."""

    email: str
    password: str
    user: dict[str, Any]
    tokens: dict[str, str]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}


@dataclass
class WebServer:
    """The live server of a test, and an API client on it."""

    live: LiveServer
    http: httpx.AsyncClient
    fake: FakeOpenAI

    @property
    def url(self) -> str:
        return self.live.url

    def pace(self, milliseconds: int) -> None:
        """The offline model's pause between words from now on (read at each reply)."""
        self.live.app.state.settings.offline_model_delay_ms = milliseconds

    async def register(self, email: str | None = None, **extra: Any) -> Account:
        email = email or f"web-{uuid.uuid4().hex[:10]}@example.com"
        response = await self.http.post(
            "/api/auth/register", json={"email": email, "password": PASSWORD, **extra}
        )
        assert response.status_code == 201, response.text
        data = response.json()["data"]
        return Account(email, PASSWORD, data["user"], data["tokens"])

    async def call(
        self, account: Account, method: str, path: str, body: Any = None, status: int = 200
    ) -> Any:
        """An API call as `account`; checks the status, answers the envelope's `data`."""
        response = await self.http.request(method, path, json=body, headers=account.headers)
        assert response.status_code == status, response.text
        return response.json()["data"] if response.content else None


@pytest.fixture
async def server(
    web_live: LiveServer, app: FastAPI, fake_openai: FakeOpenAI
) -> AsyncIterator[WebServer]:
    """The web server, its catalog seeded for this test (every test leaves empty tables) and
    the offline model at its fast pace."""
    settings: Settings = web_live.app.state.settings
    assert settings.models_file is not None
    plan = plan_catalog(settings, file_entries=load_models_file(settings.models_file))
    async with app.state.database.sessionmaker() as session:
        await seed_catalog(session, plan)
    fake_openai.script = Script()
    async with httpx.AsyncClient(base_url=web_live.url, timeout=30) as http:
        web = WebServer(web_live, http, fake_openai)
        web.pace(FAST_PACE_MS)
        try:
            yield web
        finally:
            web.pace(FAST_PACE_MS)
            await wait_until_quiet(web_live, app)


async def wait_until_quiet(live: LiveServer, app: FastAPI, within: float = 20.0) -> None:
    """Wait until the server handles no request and generates no reply, so that emptying the
    tables after the test (on PostgreSQL, a TRUNCATE) never races a late request of the page."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        async with app.state.database.sessionmaker() as session:
            streaming = await session.scalar(
                select(func.count()).select_from(Message).where(Message.status == "streaming")
            )
        if not streaming and not live.server.server_state.tasks:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the web server was still busy after the test")


@dataclass
class PageWatch:
    """What a page did that a test must not let pass: uncaught errors, CSP violations,
    dialogs (alert/confirm/prompt: never used by the page, so any one is an injected script)."""

    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def check(self) -> None:
        assert not self.errors, f"the page reported errors: {self.errors}"
        assert not self.dialogs, f"a dialog opened (a script ran?): {self.dialogs}"


_CSP_VIOLATION = re.compile(r"Content Security Policy|Trusted Type|TrustedHTML", re.IGNORECASE)


def _session_state(origin: str, account: Account) -> dict[str, Any]:
    value = json.dumps({"tokens": account.tokens, "user": account.user})
    return {
        "cookies": [],
        "origins": [{"origin": origin, "localStorage": [{"name": SESSION_KEY, "value": value}]}],
    }


class OpenPage:
    """The `open_page` fixture: `await open_page(account=None, signed_in=True, **options)`."""

    def __init__(self, browser: Browser, server: WebServer) -> None:
        self.browser = browser
        self.server = server
        self.contexts: list[BrowserContext] = []
        self.watches: dict[Page, PageWatch] = {}

    async def __call__(
        self,
        account: Account | None = None,
        *,
        signed_in: bool = True,
        expect_signed_in: bool | None = None,
        path: str = "/",
        **options: Any,
    ) -> Page:
        """A new browser context (signed in as `account`, or as a new account when none is
        given, or signed out) on `path`, once the app (or, signed out or with
        `expect_signed_in=False`, the sign-in screen) shows. `options` go to the context."""
        options.setdefault("viewport", WIDE)
        options.setdefault("reduced_motion", "reduce")  # drawers open at once (screenshots)
        if signed_in:
            account = account or await self.server.register()
            options["storage_state"] = _session_state(self.server.url, account)
        context = await self.browser.new_context(base_url=self.server.url, **options)
        context.set_default_timeout(15_000)
        self.contexts.append(context)
        page = await context.new_page()
        watch = PageWatch()
        self.watches[page] = watch

        def on_console(message: ConsoleMessage) -> None:
            if _CSP_VIOLATION.search(message.text):
                watch.errors.append(message.text)

        async def on_dialog(dialog: Dialog) -> None:
            watch.dialogs.append(f"{dialog.type}: {dialog.message}")
            await dialog.dismiss()

        page.on("pageerror", lambda error: watch.errors.append(f"uncaught: {error}"))
        page.on("console", on_console)
        page.on("dialog", on_dialog)
        await page.goto(path)
        app_expected = signed_in if expect_signed_in is None else expect_signed_in
        await expect(page.locator("#app-view" if app_expected else "#auth-view")).to_be_visible()
        return page

    async def close(self) -> None:
        for context in self.contexts:
            await context.close()


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


Shoot = Callable[[Page, str], Awaitable[Path]]


@pytest.fixture
def shoot(screenshot_dir: Path) -> Shoot:
    """`await shoot(page, "name")`: save a screenshot as `<screenshot dir>/<name>.png`."""

    async def take(page: Page, name: str) -> Path:
        path = screenshot_dir / f"{name}.png"
        await page.screenshot(path=str(path))
        return path

    return take
