"""SQLite statements take one trip each to aiosqlite's thread (`parley.core.sqlite_driver`), with
the same results SQLAlchemy's own cursor gives; a connection goes back to the pool rolled back
only when it holds a transaction. On a scratch SQLite file, whichever database the suite runs
on."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from parley.core.db import build_engine
from tests.fixtures.settings import make_settings

METADATA = MetaData()
ITEMS = Table(
    "items",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("name", String, nullable=False),
)


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}"
    built = build_engine(make_settings(url, tmp_path, sqlite_busy_timeout_ms=2_000), url)
    async with built.begin() as connection:
        await connection.run_sync(METADATA.create_all)
    try:
        yield built
    finally:
        await built.dispose()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of each function sent to an aiosqlite thread, in order."""
    sent: list[str] = []
    real = aiosqlite.Connection._execute

    async def counting(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(getattr(fn, "__name__", repr(fn)))
        return await real(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counting)
    return sent


async def test_results_are_the_drivers_own(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        inserted = await connection.execute(insert(ITEMS).values(name="a"))
        assert inserted.inserted_primary_key == (1,)  # lastrowid
        await connection.execute(insert(ITEMS), [{"name": "b"}, {"name": "c"}])  # executemany
        returned = await connection.execute(
            insert(ITEMS).values(name="d").returning(ITEMS.c.id, ITEMS.c.name)
        )
        assert returned.all() == [(4, "d")]
        changed = await connection.execute(
            update(ITEMS).where(ITEMS.c.name.in_(["a", "b"])).values(name="x")
        )
        assert changed.rowcount == 2
        rows = await connection.execute(select(ITEMS).order_by(ITEMS.c.id))
        assert rows.keys() == ["id", "name"]  # the description
        assert rows.all() == [(1, "x"), (2, "x"), (3, "c"), (4, "d")]
        assert (await connection.execute(select(ITEMS).where(ITEMS.c.id == 9))).first() is None
    with pytest.raises(Exception, match="UNIQUE constraint failed"):
        async with engine.begin() as connection:
            await connection.execute(insert(ITEMS).values(id=1, name="again"))


async def test_a_statement_is_one_trip_and_a_finished_session_none_more(
    engine: AsyncEngine, trips: list[str]
) -> None:
    sessions = async_sessionmaker(engine)
    async with sessions() as session:  # warm: the pool's connection exists
        await session.execute(select(ITEMS))
    trips.clear()
    async with sessions() as session:
        await session.execute(select(ITEMS).where(ITEMS.c.id == 1))
    assert trips == ["_run"]  # the read; nothing to roll back on its return
    trips.clear()
    async with sessions() as session:
        await session.execute(insert(ITEMS).values(name="a"))
        await session.commit()
    # The insert and the commit (which has its own trip); no rollback after the commit.
    assert trips == ["_run", "commit"]


async def test_a_connection_returned_in_a_transaction_is_rolled_back(
    engine: AsyncEngine,
) -> None:
    """A write SQLAlchemy did not see begin (made on the driver's connection itself) is rolled
    back when the connection goes back to the pool: not kept, and SQLite's lock freed."""

    def write_unseen(sync_connection: Any) -> None:
        cursor = sync_connection.connection.dbapi_connection.cursor()
        cursor.execute("INSERT INTO items (name) VALUES ('unseen')")
        cursor.close()

    async with engine.connect() as connection:
        await connection.run_sync(write_unseen)
    async with asyncio.timeout(5), engine.begin() as connection:
        await connection.execute(insert(ITEMS).values(name="next"))
    async with engine.connect() as connection:
        names = (await connection.execute(select(ITEMS.c.name))).scalars().all()
    assert names == ["next"]


async def test_raw_sql_and_pragmas_still_work(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        assert (await connection.execute(text("PRAGMA foreign_keys"))).scalar_one() == 1
        assert (await connection.exec_driver_sql("SELECT 1 + 1")).scalar_one() == 2
