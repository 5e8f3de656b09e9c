"""Database plumbing that knows no domain: the declarative base, ids, timestamps, the engine.

Every table inherits `Base` (stable constraint names for SQLite batch migrations and PostgreSQL
alike) and `IdTimestampMixin` (a UUIDv7 primary key, timezone-aware `created_at`/`updated_at`).
The engine is built from settings with the pragmas SQLite needs (WAL, foreign keys, busy timeout)
and the pool options PostgreSQL wants (size, timeout, pre-ping).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

import uuid_utils.compat as uuid_compat
from sqlalchemy import DateTime, MetaData, event
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.types import TypeDecorator

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
            url, connect_args={"timeout": 30}, hide_parameters=True, **pool
        )
        event.listen(
            engine.sync_engine, "connect", _sqlite_pragmas(settings.sqlite_busy_timeout_ms)
        )
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
