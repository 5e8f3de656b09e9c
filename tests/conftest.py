"""Shared fixtures: one migrated database per test session (per xdist worker), the app with its
lifespan, an HTTP client over ASGI, users made through the public API, a live server on a free
loopback port for tests that need a real client, and the fake upstreams with an app over them
(shared by the turn and usage tests). Helpers are in `tests.fixtures`, fakes in `tests.fakes`.

Choose the database with `--db=sqlite` (default) or `--db=postgres` (or `PARLEY_TEST_DB`).
PostgreSQL tests use a fresh database per worker on `PARLEY_TEST_POSTGRES_URL`
(default `postgresql+asyncpg://postgres@127.0.0.1:5432/postgres`), dropped at the end.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update
from sqlalchemy.engine import make_url

from parley import migrate
from parley.accounts.models import User
from parley.app import create_app
from parley.background import build_worker
from parley.jobs.worker import Worker
from parley.llm.cache import catalog_changed
from parley.settings import Settings
from tests.fakes import Script
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FaultyOpenAI
from tests.fakes.upstreams import running_upstreams
from tests.fixtures.accounts import PASSWORD, TestUser, UserFactory
from tests.fixtures.catalogs import seed_for, upstream_settings
from tests.fixtures.databases import (
    empty_tables,
    postgres_admin_url,
    recreate_postgres_database,
    worker_id,
)
from tests.fixtures.servers import LiveServer, start_live_server, stop_live_server
from tests.fixtures.settings import make_settings


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--db",
        choices=("sqlite", "postgres"),
        default=os.environ.get("PARLEY_TEST_DB", "sqlite"),
        help="Database to run the suite on.",
    )
    parser.addoption(
        "--soak",
        action="store_true",
        default=False,
        help="Also run the benchmark-length soak tests (tests/robustness, docs/robustness.md).",
    )


@pytest.fixture(scope="session")
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.config.getoption("--db"))


@pytest.fixture(scope="session")
def database_url(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated, empty database for this test session (one per xdist worker)."""
    if db_kind == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "parley.db"
        url = f"sqlite+aiosqlite:///{path}"
        migrate.upgrade(Settings(_env_file=None, database_url=url, data_dir=path.parent))
        yield url
        return
    admin_url = postgres_admin_url()
    name = f"parley_test_{worker_id()}_{os.getpid()}"
    asyncio.run(recreate_postgres_database(admin_url, name, create=True))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(Settings(_env_file=None, database_url=url))
    try:
        yield url
    finally:
        asyncio.run(recreate_postgres_database(admin_url, name, create=False))


@pytest.fixture
def fresh_database_url(db_kind: str, tmp_path: Path) -> Iterator[str]:
    """An empty, unmigrated database of the current kind for one test (migrations, the CLI):
    a new SQLite file, or a new PostgreSQL database dropped afterwards."""
    if db_kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    admin_url = postgres_admin_url()
    name = f"parley_fresh_{worker_id()}_{uuid.uuid4().hex[:12]}"
    asyncio.run(recreate_postgres_database(admin_url, name, create=True))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(recreate_postgres_database(admin_url, name, create=False))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


@pytest.fixture(scope="session")
def settings(database_url: str, data_dir: Path) -> Settings:
    return make_settings(database_url, data_dir)


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    """The app, with its lifespan running for the whole session."""
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(autouse=True)
async def _clean_state(app: FastAPI) -> AsyncIterator[None]:
    """Every test leaves empty tables and fresh rate-limit counters behind it."""
    yield
    await empty_tables(app)
    catalog_changed()  # the catalog table was emptied under the workers' caches
    await app.state.rate_limiter.reset()


@pytest.fixture
async def worker(app: FastAPI) -> AsyncIterator[Worker]:
    """Parley's own worker (every job kind, every schedule) for the session's app: jobs run as in
    production (ingestion, titles)."""
    running = build_worker(app.state.runtime)
    running.poll_seconds = 0.1
    running.start()
    yield running
    await running.stop(grace_seconds=0)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client over the app's ASGI interface."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def make_user(client: httpx.AsyncClient, app: FastAPI) -> UserFactory:
    """Register a user through the API (`admin=True` then promotes them in the database)."""

    async def factory(
        email: str | None = None, password: str = PASSWORD, *, admin: bool = False
    ) -> TestUser:
        email = email or f"user-{uuid.uuid4().hex[:10]}@example.com"
        response = await client.post(
            "/api/auth/register", json={"email": email, "password": password}
        )
        assert response.status_code == 201, response.text
        data = response.json()["data"]
        if admin:
            async with app.state.database.sessionmaker() as session:
                await session.execute(
                    update(User)
                    .where(User.id == uuid.UUID(data["user"]["id"]))
                    .values(is_admin=True)
                )
                await session.commit()
        return TestUser(
            id=data["user"]["id"],
            email=email,
            password=password,
            access_token=data["tokens"]["access_token"],
            refresh_token=data["tokens"]["refresh_token"],
        )

    return factory


@pytest.fixture
async def user(make_user: UserFactory) -> TestUser:
    return await make_user()


@pytest.fixture
async def other_user(make_user: UserFactory) -> TestUser:
    return await make_user()


@pytest.fixture
async def admin(make_user: UserFactory) -> TestUser:
    return await make_user(admin=True)


@pytest.fixture
def auth_client(app: FastAPI) -> Callable[[TestUser], httpx.AsyncClient]:
    """`auth_client(user)`: a client that sends the user's access token (close it, or use `async
    with`)."""

    def factory(test_user: TestUser) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://testserver",
            headers=test_user.headers,
        )

    return factory


@pytest.fixture(scope="session")
def live_server(settings: Settings) -> Iterator[LiveServer]:
    """A Parley server on a free loopback port, for real clients (MCP SDK, openai SDK, ...)."""
    live = start_live_server(settings)
    try:
        yield live
    finally:
        stop_live_server(live)


# -- the fake upstreams, and an app over them (the turn and usage tests) -------------------------


@pytest.fixture(scope="session")
def fake_upstreams() -> Iterator[tuple[FaultyOpenAI, FakeAnthropic]]:
    with running_upstreams() as fakes:
        yield fakes


@pytest.fixture(scope="session")
async def upstream_app(
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    fake_upstreams: tuple[FaultyOpenAI, FakeAnthropic],
) -> AsyncIterator[FastAPI]:
    """An app whose catalog holds the fake upstreams' models (the default: the OpenAI one)."""
    settings = upstream_settings(database_url, tmp_path_factory.mktemp("upstream"), fake_upstreams)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def upstream(
    upstream_app: FastAPI, fake_upstreams: tuple[FaultyOpenAI, FakeAnthropic]
) -> FaultyOpenAI:
    """The fake OpenAI upstream, reset, with the upstream app's catalog seeded for this test."""
    openai, anthropic = fake_upstreams
    openai.reset()
    anthropic.script = Script()
    await seed_for(upstream_app, upstream_app.state.settings)
    return openai


@pytest.fixture
async def api(upstream_app: FastAPI, upstream: FaultyOpenAI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the upstream app."""
    transport = httpx.ASGITransport(app=upstream_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http
