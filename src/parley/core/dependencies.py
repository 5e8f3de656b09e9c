"""Request-scoped dependencies that know no domain: the database session, the client's address,
list paging parameters and `NoStore` (answers no cache may keep); and plain functions for the
app-wide parts a service's dependency reads (settings, database, rate limiter, cursor codec) from
`app.state`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

import anyio
from fastapi import Depends, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from parley.core.db import Database
from parley.core.pagination import DEFAULT_LIMIT, MAX_LIMIT, CursorCodec
from parley.core.ratelimit import RateLimiter
from parley.settings import Settings


def settings_of(request: Request) -> Settings:
    """The running app's settings."""
    settings: Settings = request.app.state.settings
    return settings


def database_of(request: Request) -> Database:
    """The running app's database."""
    database: Database = request.app.state.database
    return database


def rate_limiter_of(request: Request) -> RateLimiter:
    """The running app's rate limiter."""
    limiter: RateLimiter = request.app.state.rate_limiter
    return limiter


def cursor_codec_of(request: Request) -> CursorCodec:
    """The running app's cursor codec (signs and checks list cursors)."""
    codec: CursorCodec = request.app.state.cursor_codec
    return codec


# The dependencies below are `async def` although none awaits: FastAPI runs a plain `def`
# dependency in its thread pool, a thread hop per dependency per request
# (tests/core/test_dependencies.py checks that every route's dependencies are coroutines).


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session for the route; closed (and rolled back if uncommitted) before the response is
    sent, so no connection is held while a response streams.

    The close is shielded from cancellation (a client that hangs up mid-request): a rollback cut
    short would leave the connection's state unknown, and on SQLite a transaction left open holds
    the one write lock.
    """
    session = database_of(request).sessionmaker()
    try:
        yield session
    finally:
        # A session that holds no transaction and no object has nothing to close: skipping it
        # saves a trip through SQLAlchemy's greenlet (about 30 CPU-µs) on routes that read from
        # memory, such as `/v1` with the catalog cached.
        if session.in_transaction() or session.sync_session.identity_map:
            with anyio.CancelScope(shield=True):
                await session.close()


async def get_client_ip(request: Request) -> str:
    """The client's address: the peer's, or, from a proxy `parley serve --forwarded-allow-ips`
    trusts, the one its `X-Forwarded-For` names."""
    return request.client.host if request.client else "unknown"


async def no_store(response: Response) -> None:
    """Marks the answer as one that no cache may keep: RFC 6749 section 5.1 requires
    `Cache-Control: no-store` and `Pragma: no-cache` on every answer that carries tokens,
    credentials or other secrets."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


@dataclass(frozen=True, slots=True)
class PageParams:
    """`limit` and `cursor` of a list request."""

    limit: int
    cursor: str | None


async def get_page_params(
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description="Items per page (1..100).")
    ] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(max_length=1024, description="`next_cursor` of the previous page."),
    ] = None,
) -> PageParams:
    """Paging parameters, validated."""
    return PageParams(limit=limit, cursor=cursor or None)


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
ClientIpDep = Annotated[str, Depends(get_client_ip)]
PageDep = Annotated[PageParams, Depends(get_page_params)]
# In a route's `dependencies=[...]`: its answers carry tokens or secrets (see `no_store`).
NoStore = Depends(no_store)
