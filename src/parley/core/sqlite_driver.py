"""SQLite through aiosqlite with one trip to the driver's thread per statement.

SQLAlchemy's aiosqlite adapter sends each step of a statement to aiosqlite's thread on its own:
making the cursor, executing, fetching the rows, closing the cursor — four round trips between
the event loop and the thread, each a queue put, a thread wake-up and a future resolved back on
the loop. `OneTripCursor` does the four in one function on the thread and keeps the rows, the
description, the row count and the last row id it brought back (bench/findings.md has what it
saves).

And a commit or a rollback goes to the thread only if SQLite has a transaction open (it says so
without a trip: `sqlite3.Connection.in_transaction`; sqlite3 itself does nothing otherwise). A
session that only read, closed, or a connection going back to the pool after its commit, made a
trip to roll back nothing.

`install(engine)` applies both to a SQLite engine. Server-side cursors (`stream_results`) keep
SQLAlchemy's own cursor.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
)
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState
from sqlalchemy.util import EMPTY_DICT

# What one statement brings back from the driver's thread.
_Outcome = tuple[Any, Sequence[Any], int, int | None]


def _run(connection: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> _Outcome:
    """Execute one statement and read all it returns (on aiosqlite's thread)."""
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else ()
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A client-side cursor whose statements each take one trip to aiosqlite's thread."""

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: AsyncAdapt_aiosqlite_connection) -> None:
        # No driver cursor is made (the parent's constructor makes one, a trip of its own).
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self._arraysize = 1

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    async def _async_soft_close(self) -> None:
        return None  # nothing is open on the driver's side

    def close(self) -> None:
        self._rows.clear()

    async def _run(self, operation: Any, parameters: Any, many: bool) -> None:
        async with self._adapt_connection._execute_mutex:
            driver = self._connection
            description, rows, rowcount, lastrowid = await driver._execute(
                _run, driver._conn, operation, parameters, many
            )
        self._description = description
        self._rows = collections.deque(rows)
        self._rowcount = rowcount
        self._lastrowid = lastrowid

    async def _execute_async(self, operation: Any, parameters: Any) -> None:
        await self._run(operation, parameters, False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Any) -> None:
        await self._run(operation, seq_of_parameters, True)


def _in_transaction(connection: AsyncAdapt_aiosqlite_connection) -> bool:
    try:
        return bool(connection._connection._conn.in_transaction)
    except (AttributeError, ValueError, sqlite3.Error):
        return True  # closed, or not ours to read: let the driver say


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    """SQLAlchemy's aiosqlite connection with `OneTripCursor` as its cursor, whose commit and
    rollback make no trip when SQLite has no transaction open (sqlite3 does nothing then)."""

    __slots__ = ()
    _cursor_cls = OneTripCursor  # type: ignore[assignment]  # a subclass; mypy reads the stub strictly

    def rollback(self) -> None:
        if _in_transaction(self):
            super().rollback()

    def commit(self) -> None:
        if _in_transaction(self):
            super().commit()


def install(engine: AsyncEngine) -> None:
    """Use `OneTripConnection` for the engine's connections and roll back only connections in a
    transaction when they go back to the pool. The engine must be made with
    `pool_reset_on_return=None` (the reset is then this module's)."""

    @event.listens_for(engine.sync_engine, "connect")
    def _one_trip(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.__class__ = OneTripConnection

    @event.listens_for(engine.sync_engine, "reset")
    def _roll_back_if_needed(
        dbapi_connection: Any, _record: ConnectionPoolEntry, state: PoolResetState
    ) -> None:
        if not state.asyncio_safe or state.transaction_was_reset:
            return  # being discarded, or its transaction was just ended
        dbapi_connection.rollback()  # a trip only if a transaction is open
