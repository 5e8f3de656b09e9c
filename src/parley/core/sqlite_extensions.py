"""SQLite extensions loaded into each new connection of a SQLite engine: sqlite-vec, whose vector
distance functions (`vec_distance_cosine`) let a search compare vectors inside SQLite instead of
reading them into Python.

It loads where it can: Python's `sqlite3` must be built with extension loading
(`sqlite3.Connection.enable_load_extension`; pyenv's and python.org's macOS builds leave it out,
Debian's and most distributions' Pythons have it) and the `sqlite_vec` package must import. Where
either is missing, or loading fails, connections work as before and `sqlite_vec_status` says why,
so callers fall back to their own way. Loading is switched on for the one call and off again.
"""

from __future__ import annotations

import logging
import sqlite3
import weakref
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import ConnectionPoolEntry

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class SqliteVecStatus:
    """Whether every connection of an engine so far loaded sqlite-vec, and what stopped it if not.

    Attributes:
        loaded: every connection opened so far has the extension (False before the first).
        version: the package's version when it can load.
        reason: why it is not loaded (None when it is, or when no connection was opened yet).
    """

    loaded: bool = False
    version: str | None = None
    reason: str | None = None


_STATUSES: weakref.WeakKeyDictionary[Engine, SqliteVecStatus] = weakref.WeakKeyDictionary()


def _loadable() -> tuple[str | None, str | None, str | None]:
    """The extension's path and version, or the reason it cannot load in this interpreter."""
    if not hasattr(sqlite3.Connection, "enable_load_extension"):
        return None, None, "this Python's sqlite3 cannot load extensions"
    try:
        import sqlite_vec  # type: ignore[import-untyped]
    except ImportError:
        return None, None, "the sqlite-vec package is not installed"
    return str(sqlite_vec.loadable_path()), str(sqlite_vec.__version__), None


def _load_on_thread(connection: sqlite3.Connection, path: str) -> None:
    """Load the extension (on aiosqlite's thread, which owns the connection)."""
    connection.enable_load_extension(True)
    try:
        connection.load_extension(path)
    finally:
        connection.enable_load_extension(False)


def install(engine: AsyncEngine) -> None:
    """Load sqlite-vec into each new connection of the SQLite `engine` where it can."""
    path, version, reason = _loadable()
    status = _STATUSES[engine.sync_engine] = SqliteVecStatus(version=version, reason=reason)
    if path is None:
        return

    @event.listens_for(engine.sync_engine, "connect")
    def _load(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        if status.reason is not None:
            return  # one connection failed: none is used for it

        async def load(driver: Any) -> None:
            await driver._execute(_load_on_thread, driver._conn, path)

        try:
            dbapi_connection.run_async(load)
        except (sqlite3.Error, AttributeError) as exc:
            status.loaded = False
            status.reason = f"loading sqlite-vec failed: {exc}"
            logger.warning("SQLite: %s", status.reason)
            return
        status.loaded = True


def sqlite_vec_status(engine: Engine) -> SqliteVecStatus:
    """What became of sqlite-vec on the (sync) engine's connections."""
    return _STATUSES.get(engine) or SqliteVecStatus(reason="not a SQLite engine of Parley's")
