"""Database plumbing that knows no domain: the declarative base, ids, timestamps, the engine.

Every table inherits `Base` (stable constraint names for SQLite batch migrations and PostgreSQL
alike) and `IdTimestampMixin` (a UUIDv7 primary key, timezone-aware `created_at`/`updated_at`).
The engine is built from settings with the pragmas SQLite needs (WAL, foreign keys, busy timeout)
and its extensions where they load (`parley.core.sqlite_extensions`), and the pool options
PostgreSQL wants (size, timeout, pre-ping). On SQLite, a process's writers
queue for the one write lock in order (`SQLiteWriteQueue`), not in SQLite's busy handler.
"""

from __future__ import annotations

import asyncio
import re
import sqlite3
import uuid
import weakref
from datetime import UTC, datetime
from typing import Any, ClassVar, cast

import uuid_utils.compat as uuid_compat
from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import (
    AdaptedConnection,
    Connection,
    CursorResult,
    Dialect,
    ExecutionContext,
)
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

from parley.core import sqlite_driver, sqlite_extensions
from parley.settings import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> uuid.UUID:
    """A new UUIDv7: time-ordered, so ids sort by creation and index well."""
    return uuid_compat.uuid7()


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back timezone-aware.

    PostgreSQL keeps the zone (`timestamptz`); SQLite keeps none, so values are normalised to UTC
    on the way in and tagged as UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; pass a timezone-aware value")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """The declarative base of every Parley table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class IdTimestampMixin:
    """A UUIDv7 primary key and creation/update times, as every table has."""

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# Connections kept open to a SQLite file (see `build_engine`).
SQLITE_POOL_SIZE = 15


def _sqlite_pragmas(busy_timeout_ms: int) -> Any:
    def on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return on_connect


# Statements after which SQLite holds the write lock until the transaction ends: those before
# which Python's sqlite3 opens a transaction itself (a read runs outside one).
_SQLITE_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")
_HOLDS_WRITE_LOCK = "parley_holds_write_lock"


class SQLiteWriteQueue:
    """Writers of one SQLite engine take the database's write lock in turn, in arrival order.

    SQLite lets one transaction write at a time; the others wait in its busy handler, which
    sleeps and retries (up to 100 ms between tries) and favours no one. Under load a writer could
    lose every retry for the whole busy timeout and fail with `database is locked` while the
    others went through: a 503 for a request that asked nothing unusual. So a transaction's first
    write first takes this process's asyncio lock, which queues fairly and wakes the next writer
    as soon as the last one's connection is back in the pool (a session gives it back when it
    commits, rolls back or closes); the busy handler then only arbitrates between processes. The
    wait is bounded by the busy timeout and fails the same way (a 503).

    A lock per event loop: an engine may outlive the loop it was first used in (tests).
    """

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        self._waiting = 0

    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    @property
    def waiting(self) -> int:
        """How many writers wait for the lock now."""
        return self._waiting

    async def _acquire(self, _driver_connection: Any) -> asyncio.Lock:
        lock = self._lock()
        self._waiting += 1
        try:
            async with asyncio.timeout(self.timeout_seconds):
                await lock.acquire()
        except TimeoutError:
            raise sqlite3.OperationalError("database is locked") from None
        finally:
            self._waiting -= 1
        return lock

    def install(self, engine: AsyncEngine) -> None:
        """Listen on the engine's connections: take the lock before a transaction's first write,
        give it back when the connection returns to the pool (committed or rolled back)."""

        def before_cursor_execute(
            conn: Connection,
            _cursor: Any,
            statement: str,
            parameters: Any,
            context: ExecutionContext | None,
            _executemany: bool,
        ) -> tuple[str, Any]:
            info = conn.connection.info
            if _HOLDS_WRITE_LOCK not in info and _is_write(statement):
                adapted = cast(AdaptedConnection, conn.connection.dbapi_connection)
                info[_HOLDS_WRITE_LOCK] = adapted.run_async(self._acquire)
            return statement, parameters

        def give_back(_dbapi_connection: Any, record: ConnectionPoolEntry, *_: Any) -> None:
            lock = record.info.pop(_HOLDS_WRITE_LOCK, None)
            if lock is not None:
                lock.release()

        event.listen(
            engine.sync_engine, "before_cursor_execute", before_cursor_execute, retval=True
        )
        # Back in the pool (after its reset's rollback), closed as broken, or dropped by the
        # pool (a connection left to the garbage collector is detached, and its record's info
        # cleared on the next checkout): either way its transaction is over. A lock left held
        # would make every later write of the worker wait out the timeout.
        for name in ("checkin", "invalidate", "detach", "close"):
            event.listen(engine.sync_engine.pool, name, give_back)
        _WRITE_QUEUES[engine.sync_engine] = self


_WRITE_QUEUES: weakref.WeakKeyDictionary[Any, SQLiteWriteQueue] = weakref.WeakKeyDictionary()


def write_queue_of(engine: AsyncEngine) -> SQLiteWriteQueue | None:
    """The writers' queue of a SQLite engine (None for PostgreSQL)."""
    return _WRITE_QUEUES.get(engine.sync_engine)


_LEADING_COMMENTS = re.compile(r"\s*(?:(?:--[^\n]*(?:\n|$)|/\*.*?\*/)\s*)*", re.DOTALL)


def _is_write(statement: str) -> bool:
    """Whether sqlite3 opens a transaction before this statement (it skips leading comments)."""
    start = _LEADING_COMMENTS.match(statement)
    head = statement[start.end() if start else 0 :][:7].upper()
    return head.startswith(_SQLITE_WRITES)


def build_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    """Create the async engine for `url` (default: the configured database).

    Args:
        settings: pool sizes and SQLite timeouts come from here.
        url: overrides `settings.effective_database_url` (migrations and tests use it).
    """
    url = url or settings.effective_database_url
    if url.startswith("sqlite"):
        if ":memory:" not in url and "///" in url:
            settings.ensure_data_dir()
        pool: dict[str, Any] = {}
        if ":memory:" not in url:
            # As many connections as SQLAlchemy's default allows (5 kept, 10 more on demand), all
            # kept: the default closed each extra connection on its return, so a busy worker
            # opened one (a thread, and the pragmas) per checkout. No more than that: SQLite has
            # one writer, and more connections only queue for it.
            pool = {
                "pool_size": SQLITE_POOL_SIZE,
                "max_overflow": 0,
                "pool_timeout": settings.db_pool_timeout_seconds,
            }
        engine = create_async_engine(
            url,
            connect_args={"timeout": 30},
            hide_parameters=True,
            # The reset of a connection given back to the pool is sqlite_driver's: a rollback
            # only when a transaction is open.
            pool_reset_on_return=None,
            **pool,
        )
        event.listen(
            engine.sync_engine, "connect", _sqlite_pragmas(settings.sqlite_busy_timeout_ms)
        )
        sqlite_driver.install(engine)
        sqlite_extensions.install(engine)  # sqlite-vec, where this Python can load it
        SQLiteWriteQueue(settings.sqlite_busy_timeout_ms / 1000).install(engine)
        return engine
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_pre_ping=True,
        pool_recycle=1800,
        # Statement parameters hold user data (emails, hashes): keep them out of errors and logs.
        hide_parameters=True,
    )


class Database:
    """The engine and the session factory of one running app."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessionmaker = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> Database:
        """Build the database for these settings."""
        return cls(build_engine(settings))

    async def dispose(self) -> None:
        """Close every pooled connection."""
        await self.engine.dispose()


LIKE_ESCAPE = "\\"


def contains_pattern(text: str) -> str:
    """A LIKE pattern matching `text` anywhere, with its own `%`, `_` and `\\` taken literally.

    Use with `column.like(pattern, escape=LIKE_ESCAPE)`.
    """
    escaped = text.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2).replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def insert_of(session: AsyncSession, table: Any) -> Any:
    """An INSERT of the session's dialect, for `on_conflict_do_nothing` (both dialects have it)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql_insert(table)
    return sqlite_insert(table)


def rowcount(result: Any) -> int:
    """The rows an UPDATE or DELETE touched (0 for a result that does not say)."""
    return int(result.rowcount) if isinstance(result, CursorResult) else 0
