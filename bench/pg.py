"""A scratch PostgreSQL database for a benchmark run, dropped at the end."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.engine import make_url


async def _recreate(admin_url: str, name: str, *, create: bool) -> None:
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


@contextmanager
def postgres_database(admin_url: str, name: str) -> Iterator[str]:
    """Create database `name` on the server of `admin_url`; yield its URL; drop it."""
    asyncio.run(_recreate(admin_url, name, create=True))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_recreate(admin_url, name, create=False))
