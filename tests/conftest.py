"""Shared fixtures: one migrated database per test session (per xdist worker), the app with its
lifespan, an HTTP client over ASGI, users made through the public API, and a live server on a free
loopback port for tests that need a real client.

Choose the database with `--db=sqlite` (default) or `--db=postgres` (or `PARLEY_TEST_DB`).
PostgreSQL tests use a fresh database per worker on `PARLEY_TEST_POSTGRES_URL`
(default `postgresql+asyncpg://postgres@127.0.0.1:5432/postgres`), dropped at the end.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from sqlalchemy import delete, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from parley import migrate
from parley.accounts.models import User
from parley.app import create_app
from parley.llm.cache import catalog_changed
from parley.models import Base
from parley.settings import Settings

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
TEST_JWT_SECRET = "test-secret-" + "x" * 40
PASSWORD = "correct horse battery"


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


def _worker_id() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


async def _recreate_postgres_database(admin_url: str, name: str, *, create: bool) -> None:
    url = make_url(admin_url)
    connection = await asyncpg.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 5432,
        user=url.username or "postgres",
        password=url.password,
        database=url.database or "postgres",
    )
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if create:
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def database_url(db_kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated, empty database for this test session (one per xdist worker)."""
    if db_kind == "sqlite":
        path = tmp_path_factory.mktemp("sqlite") / "parley.db"
        url = f"sqlite+aiosqlite:///{path}"
        migrate.upgrade(Settings(_env_file=None, database_url=url, data_dir=path.parent))
        yield url
        return
    admin_url = os.environ.get("PARLEY_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    name = f"parley_test_{_worker_id()}_{os.getpid()}"
    asyncio.run(_recreate_postgres_database(admin_url, name, create=True))
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(Settings(_env_file=None, database_url=url))
    try:
        yield url
    finally:
        asyncio.run(_recreate_postgres_database(admin_url, name, create=False))


@pytest.fixture
def fresh_database_url(db_kind: str, tmp_path: Path) -> Iterator[str]:
    """An empty, unmigrated database of the current kind for one test (migrations, the CLI):
    a new SQLite file, or a new PostgreSQL database dropped afterwards."""
    if db_kind == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"
        return
    admin_url = os.environ.get("PARLEY_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    name = f"parley_fresh_{_worker_id()}_{uuid.uuid4().hex[:12]}"
    asyncio.run(_recreate_postgres_database(admin_url, name, create=True))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_recreate_postgres_database(admin_url, name, create=False))


def make_settings(database_url: str, data_dir: Path, **overrides: Any) -> Settings:
    """Settings for a test app: the test database, a fixed secret, generous rate limits."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "data_dir": data_dir,
        "jwt_secret": TEST_JWT_SECRET,
        "rate_limit_login_per_minute": 10_000,
        "rate_limit_chat_per_minute": 10_000,
        "rate_limit_v1_per_minute": 10_000,
        # The periodic sweep (every third of this) of a session-long app would otherwise wake
        # every 10 s; pytest runs the event loop only during async tests and fixtures, so a sweep
        # caught mid-transaction between tests holds SQLite's write lock while a synchronous
        # fixture waits for a new server that needs it. The start-up sweep still runs; tests of
        # the sweep set their own value.
        "generation_stale_seconds": 600.0,
        "log_level": "WARNING",
        "redis_url": None,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


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


async def _empty_tables(application: FastAPI) -> None:
    engine = application.state.database.engine
    tables = list(reversed(Base.metadata.sorted_tables))
    # A live server of the test may still be finishing a reply (its final save, its usage
    # record) while the tables are emptied: PostgreSQL may then end the TRUNCATE as one side of
    # a deadlock, which the next attempt no longer meets.
    for attempt in range(5):
        try:
            async with engine.begin() as connection:
                if engine.dialect.name == "postgresql":
                    names = ", ".join(f'"{table.name}"' for table in tables)
                    await connection.execute(text(f"TRUNCATE {names} CASCADE"))
                else:
                    for table in tables:
                        await connection.execute(delete(table))
            return
        except DBAPIError as exc:
            if attempt == 4 or "deadlock" not in str(exc.orig).lower():
                raise
            await asyncio.sleep(0.2 * (attempt + 1))


@pytest.fixture(autouse=True)
async def _clean_state(app: FastAPI) -> AsyncIterator[None]:
    """Every test leaves empty tables and fresh rate-limit counters behind it."""
    yield
    await _empty_tables(app)
    catalog_changed()  # the catalog table was emptied under the workers' caches
    await app.state.rate_limiter.reset()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client over the app's ASGI interface."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@dataclass
class TestUser:
    """A user made through the API, with their tokens."""

    __test__ = False  # a fixture value, not a test class

    id: str
    email: str | None
    password: str | None
    access_token: str
    refresh_token: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


UserFactory = Callable[..., Awaitable[TestUser]]


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


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveServer:
    """A real uvicorn server on loopback, running its own app (same database) in a thread."""

    url: str
    app: FastAPI
    server: uvicorn.Server
    thread: threading.Thread


def start_live_server(settings: Settings) -> LiveServer:
    application = create_app(settings)
    port = free_port()
    config = uvicorn.Config(
        application, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="on"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the live server did not start")
        time.sleep(0.02)
    url = f"http://127.0.0.1:{port}"
    # FastAPI builds each included router's routes on the first request that walks them, from the
    # endpoints' module-level signatures. Two apps in one process (two live servers, or one beside
    # the session's ASGI app) building at once race on that shared state: one in ~30 such starts
    # failed a request with pydantic's "alias has no effect" warning, an error under this suite's
    # filterwarnings. A deployment runs one app per process; here a request that matches no route
    # walks, and so builds, every router before the server is handed to a test.
    assert httpx.get(f"{url}/.well-known/parley-no-such-route", timeout=20).status_code == 404
    return LiveServer(url, application, server, thread)


def stop_live_server(live: LiveServer) -> None:
    live.server.should_exit = True
    live.thread.join(timeout=15)


@pytest.fixture(scope="session")
def live_server(settings: Settings) -> Iterator[LiveServer]:
    """A Parley server on a free loopback port, for real clients (MCP SDK, openai SDK, ...)."""
    live = start_live_server(settings)
    try:
        yield live
    finally:
        stop_live_server(live)


@asynccontextmanager
async def running_app(app_settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A fresh app built from `app_settings`, its lifespan running, and an ASGI client on it (for
    tests that need other settings than the session's app: small limits, CORS, Redis, ...)."""
    application = create_app(app_settings)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield application, http
