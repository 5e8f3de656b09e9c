"""Database plumbing: the SQLite pragmas on the app's engine, SQLite's writers queueing in order,
timezone-aware UTC timestamps on both databases, and the refusal of naive datetimes."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SAWarning, StatementError
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.accounts.models import User
from parley.core.db import (
    SQLITE_POOL_SIZE,
    UTCDateTime,
    build_engine,
    contains_pattern,
    new_id,
    utcnow,
    write_queue_of,
)
from tests.fixtures.apps import running_app
from tests.fixtures.settings import make_settings


async def test_sqlite_pragmas_are_applied_to_the_apps_engine(app: FastAPI, db_kind: str) -> None:
    if db_kind != "sqlite":
        pytest.skip("PRAGMAs are SQLite's; PostgreSQL enforces foreign keys and has no WAL switch")
    async with app.state.database.engine.connect() as connection:
        foreign_keys = (await connection.execute(text("PRAGMA foreign_keys"))).scalar_one()
        journal_mode = (await connection.execute(text("PRAGMA journal_mode"))).scalar_one()
        busy_timeout = (await connection.execute(text("PRAGMA busy_timeout"))).scalar_one()
    assert foreign_keys == 1
    assert str(journal_mode).lower() == "wal"
    assert busy_timeout == app.state.settings.sqlite_busy_timeout_ms
    assert busy_timeout > 0


async def test_the_pool_keeps_its_connections(app: FastAPI, db_kind: str) -> None:
    """With SQLAlchemy's default SQLite pool (5 kept, 10 more closed on return), a busy worker
    opened and closed a connection (and aiosqlite's thread) per checkout. Twelve sessions at
    once, returned: the pool keeps them all for the next ones."""
    settings = app.state.settings
    pool = app.state.database.engine.pool
    kept = SQLITE_POOL_SIZE if db_kind == "sqlite" else settings.db_pool_size
    assert pool.size() == kept
    assert kept >= 10
    sessions = [app.state.database.sessionmaker() for _ in range(kept)]
    try:
        for session in sessions:
            await session.execute(text("SELECT 1"))
    finally:
        for session in sessions:
            await session.close()
    assert pool.checkedin() == kept


async def test_timestamps_come_back_aware_and_in_utc(app: FastAPI) -> None:
    paris_summer = timezone(timedelta(hours=2))
    written = datetime(2026, 7, 14, 12, 30, 15, 123456, tzinfo=paris_summer)
    user_id = uuid.uuid4()
    async with app.state.database.sessionmaker() as session:
        session.add(
            User(
                id=user_id,
                email=f"tz-{user_id.hex[:8]}@example.com",
                display_name="tz",
                created_at=written,
                updated_at=written,
            )
        )
        await session.commit()
    async with app.state.database.sessionmaker() as session:
        read = (
            await session.execute(select(User.created_at).where(User.id == user_id))
        ).scalar_one()
    assert read.tzinfo is not None
    assert read.utcoffset() == timedelta(0)
    assert read == written
    assert read.hour == 10


async def test_naive_datetimes_are_refused(app: FastAPI) -> None:
    naive = datetime(2026, 1, 1, 12, 0, 0)
    async with app.state.database.sessionmaker() as session:
        session.add(User(email="naive@example.com", display_name="naive", created_at=naive))
        with pytest.raises(StatementError, match="naive datetimes are not stored"):
            await session.flush()
        await session.rollback()


def test_utc_datetime_type_normalises_both_ways() -> None:
    column_type = UTCDateTime()
    aware = datetime(2026, 3, 1, 23, 0, tzinfo=timezone(timedelta(hours=-5)))
    stored = column_type.process_bind_param(aware, dialect=None)  # type: ignore[arg-type]
    assert stored == aware
    assert stored is not None
    assert stored.tzinfo == UTC
    assert stored.day == 2
    naive_from_sqlite = datetime(2026, 3, 2, 4, 0)
    read = column_type.process_result_value(naive_from_sqlite, dialect=None)  # type: ignore[arg-type]
    assert read == datetime(2026, 3, 2, 4, 0, tzinfo=UTC)
    assert column_type.process_bind_param(None, dialect=None) is None  # type: ignore[arg-type]


def test_ids_are_time_ordered_uuid7() -> None:
    ids = [new_id() for _ in range(50)]
    assert all(value.version == 7 for value in ids)
    assert ids == sorted(ids)
    assert utcnow().tzinfo == UTC


async def test_like_pattern_takes_wildcards_literally(app: FastAPI) -> None:
    async with app.state.database.sessionmaker() as session:
        for name in ("50% off", "500 off", "a_b", "axb"):
            session.add(User(email=f"{uuid.uuid4().hex[:8]}@example.com", display_name=name))
        await session.commit()
        found = (
            await session.execute(
                select(User.display_name)
                .where(User.display_name.like(contains_pattern("0%"), escape="\\"))
                .order_by(User.display_name)
            )
        ).scalars()
        assert list(found) == ["50% off"]
        underscore = (
            await session.execute(
                select(User.display_name).where(
                    User.display_name.like(contains_pattern("_"), escape="\\")
                )
            )
        ).scalars()
        assert list(underscore) == ["a_b"]


async def test_a_database_busy_past_its_timeout_is_a_503_not_a_500(
    db_kind: str, database_url: str, tmp_path: Path, make_user: Any
) -> None:
    """A write that cannot get SQLite's lock within `SQLITE_BUSY_TIMEOUT_MS` fails as a retryable
    503 in the envelope, with nothing stored; once the lock is free the same request succeeds."""
    if db_kind != "sqlite":
        pytest.skip("SQLite's single write lock; PostgreSQL's faults are in tests/robustness")
    user = await make_user()
    path = make_url(database_url).database
    assert path is not None
    settings = make_settings(database_url, tmp_path, sqlite_busy_timeout_ms=200)
    async with running_app(settings) as (_app, http):
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # another process holding the write lock
            busy = await http.post("/api/tasks", json={"title": "blocked"}, headers=user.headers)
        finally:
            holder.rollback()
            holder.close()
        assert busy.status_code == 503, busy.text
        assert busy.json()["error"]["code"] == "service_unavailable"
        assert busy.headers["Retry-After"] == "1"
        assert "locked" not in busy.text  # no driver message in the body
        listed = await http.get("/api/tasks", headers=user.headers)
        assert listed.json()["data"]["items"] == []
        created = await http.post("/api/tasks", json={"title": "free"}, headers=user.headers)
        assert created.status_code == 201


async def test_a_pool_exhausted_past_its_timeout_is_a_503_not_a_500(
    database_url: str, tmp_path: Path, make_user: Any
) -> None:
    """Every connection taken for longer than `DB_POOL_TIMEOUT_SECONDS` (an overloaded worker):
    the request waiting for one fails as a retryable 503, and succeeds once they are back."""
    user = await make_user()
    settings = make_settings(
        database_url, tmp_path, db_pool_size=2, db_max_overflow=0, db_pool_timeout_seconds=0.3
    )
    async with running_app(settings) as (application, http):
        pool = application.state.database.engine.pool
        holders = [await application.state.database.engine.connect() for _ in range(pool.size())]
        try:
            starved = await http.get("/api/tasks", headers=user.headers)
        finally:
            for holder in holders:
                await holder.close()
        assert starved.status_code == 503, starved.text
        assert starved.json()["error"]["code"] == "service_unavailable"
        assert starved.headers["Retry-After"] == "1"
        listed = await http.get("/api/tasks", headers=user.headers)
        assert listed.status_code == 200, listed.text


async def _wait_for_writers(engine: Any, count: int) -> None:
    queue = write_queue_of(engine)
    assert queue is not None
    async with asyncio.timeout(10):
        while queue.waiting < count:  # noqa: ASYNC110 - the queue has no event to wait on
            await asyncio.sleep(0.005)


@asynccontextmanager
async def _scratch_sqlite(tmp_path: Path, busy_timeout_ms: int) -> AsyncIterator[AsyncEngine]:
    """An engine as the app builds it, on a new SQLite file with one table `t (n INTEGER)`."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'scratch.db'}"
    engine = build_engine(make_settings(url, tmp_path, sqlite_busy_timeout_ms=busy_timeout_ms), url)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (n INTEGER NOT NULL)"))
        yield engine
    finally:
        await engine.dispose()


async def test_sqlite_writers_take_the_write_lock_in_arrival_order(
    db_kind: str, tmp_path: Path
) -> None:
    """Six transactions wanting to write while another holds the lock each write once it is
    free, in the order they asked, with no `database is locked`: SQLite's own busy handler
    polls and favours no one, and under load starved some writers into 503s."""
    if db_kind != "sqlite":
        pytest.skip("SQLite's single write lock")
    async with _scratch_sqlite(tmp_path, busy_timeout_ms=10_000) as engine:
        holder = await engine.connect()
        await holder.execute(text("INSERT INTO t VALUES (0)"))

        async def write(n: int) -> None:
            async with engine.connect() as connection:
                # sqlite3 skips a leading comment to see a write, and so must the queue.
                sql = (
                    "/* tagged */ INSERT INTO t VALUES (:n)"
                    if n == 3
                    else "INSERT INTO t VALUES (:n)"
                )
                await connection.execute(text(sql), {"n": n})
                await asyncio.sleep(0.01)  # still in the transaction: the others wait
                await connection.commit()

        writers = []
        for n in range(1, 7):
            writers.append(asyncio.create_task(write(n)))
            await _wait_for_writers(engine, n)
        # Reads do not queue behind the writers.
        async with asyncio.timeout(2), engine.connect() as reader:
            assert (await reader.execute(text("SELECT count(*) FROM t"))).scalar() == 0
        await holder.commit()
        await holder.close()
        await asyncio.gather(*writers)
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT n FROM t ORDER BY rowid"))
            assert [n for (n,) in rows] == [0, 1, 2, 3, 4, 5, 6]


async def test_the_sqlite_write_lock_comes_back_on_rollback_and_from_dropped_connections(
    db_kind: str, tmp_path: Path
) -> None:
    """A transaction that rolls back, a connection invalidated mid-transaction and one left to
    the garbage collector give the lock back at once: the next writer does not wait out the busy
    timeout."""
    if db_kind != "sqlite":
        pytest.skip("SQLite's single write lock")
    async with _scratch_sqlite(tmp_path, busy_timeout_ms=30_000) as engine:
        async with engine.connect() as first:
            await first.execute(text("INSERT INTO t VALUES (1)"))
            await first.rollback()
        broken = await engine.connect()
        await broken.execute(text("INSERT INTO t VALUES (2)"))
        await broken.invalidate()
        async with asyncio.timeout(5), engine.begin() as connection:
            await connection.execute(text("INSERT INTO t VALUES (3)"))
        await broken.close()
        # A connection never closed, left to the garbage collector (a bug elsewhere, which
        # SQLAlchemy warns about): the pool drops it, and the lock with it.
        forgotten = await engine.connect()
        await forgotten.execute(text("INSERT INTO t VALUES (4)"))
        del forgotten
        with pytest.warns(SAWarning, match="garbage collector"):
            gc.collect()
        async with asyncio.timeout(5), engine.begin() as connection:
            await connection.execute(text("INSERT INTO t VALUES (5)"))
        async with engine.connect() as connection:
            rows = await connection.execute(text("SELECT n FROM t ORDER BY n"))
            assert [n for (n,) in rows] == [3, 5]


async def test_a_writer_queued_past_the_busy_timeout_is_a_503_not_a_500(
    db_kind: str, database_url: str, tmp_path: Path, make_user: Any
) -> None:
    """A request whose write waits behind this worker's own writer for longer than
    `SQLITE_BUSY_TIMEOUT_MS` fails as a retryable 503 with nothing stored, as when another
    process holds the lock; once the lock is free the same request succeeds."""
    if db_kind != "sqlite":
        pytest.skip("SQLite's single write lock")
    user = await make_user()
    settings = make_settings(database_url, tmp_path, sqlite_busy_timeout_ms=200)
    async with running_app(settings) as (application, http):
        holder = await application.state.database.engine.connect()
        try:
            await holder.execute(text("UPDATE users SET display_name = display_name WHERE 0"))
            busy = await http.post("/api/tasks", json={"title": "queued"}, headers=user.headers)
        finally:
            await holder.close()
        assert busy.status_code == 503, busy.text
        assert busy.json()["error"]["code"] == "service_unavailable"
        assert busy.headers["Retry-After"] == "1"
        listed = await http.get("/api/tasks", headers=user.headers)
        assert listed.json()["data"]["items"] == []
        created = await http.post("/api/tasks", json={"title": "free"}, headers=user.headers)
        assert created.status_code == 201, created.text
