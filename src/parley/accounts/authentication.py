"""Authentication of every request: `authenticate` turns a bearer token (an access JWT, an API
key, or a JWT of a configured external issuer: `parley.accounts.external`) into a `Caller`, on
every surface (`/api`, `/v1`, `/mcp`, streams), and `TouchThrottle` keeps a busy key's
`last_used_at` from being written on every call.

A caller is read as plain values by one prebuilt Core query on a connection of its own, not as ORM
objects in a route's session (see bench/findings.md for why). A route that needs the user's ORM row
loads it by id from the caller, with `load_user`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from parley.accounts import repository
from parley.accounts.caller_cache import CallerCache
from parley.accounts.external import ExternalIssuers
from parley.accounts.external_identity_service import external_user_standing
from parley.accounts.models import User
from parley.core.db import utcnow
from parley.core.errors import InvalidToken
from parley.core.security import (
    api_key_lookup_prefix,
    decode_token,
    looks_like_api_key,
    secrets_match,
)
from parley.core.telemetry import traced

MAX_TOKEN_CHARS = 4096
# `last_used_at` is written at most this often per key, so a busy key does not write on every call.
API_KEY_TOUCH_INTERVAL = timedelta(seconds=60)


class Owner(Protocol):
    """Whoever owns the data a use case acts on: a `Caller`, or a `User` row. Services scope every
    read and write by its id."""

    @property
    def id(self) -> uuid.UUID:
        """The owning user's id."""
        ...


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling, as plain values: the user's standing, and the API key they used if any.

    Attributes:
        user_id: the calling user.
        is_admin: whether the user is an admin.
        is_guest: whether the user is a guest (not yet upgraded).
        monthly_budget_usd: the user's own monthly budget (None: the default).
        api_key_id: the API key the call came with; None for an access token.
    """

    user_id: uuid.UUID
    is_admin: bool
    is_guest: bool
    monthly_budget_usd: Decimal | None
    api_key_id: uuid.UUID | None = None

    @property
    def id(self) -> uuid.UUID:
        """The user's id: a caller is an `Owner` (and the usage meter's `BudgetHolder`)."""
        return self.user_id


class TouchThrottle:
    """The keys whose `last_used_at` this app last wrote, and when: a key is written at most once
    an interval per app.

    Every request in flight when the interval lapses read the same stale value; had each written
    it, a busy key would have sent a burst of identical updates to the database (on SQLite, each
    queued for the one write lock while holding a pooled connection). The first request claims the
    write and the others skip it. The memory is bounded: it is cleared when full.
    """

    def __init__(
        self, interval: timedelta = API_KEY_TOUCH_INTERVAL, max_keys: int = 10_000
    ) -> None:
        self.interval = interval
        self.max_keys = max_keys
        self._claims: dict[uuid.UUID, datetime] = {}

    def claim(self, key_id: uuid.UUID, last_used_at: datetime | None, now: datetime) -> bool:
        """Whether this request should write the key's `last_used_at` (and, if so, claims it)."""
        if last_used_at is not None and now - last_used_at < self.interval:
            return False
        claimed = self._claims.get(key_id)
        if claimed is not None and now - claimed < self.interval:
            return False
        if len(self._claims) >= self.max_keys:
            self._claims.clear()
        self._claims[key_id] = now
        return True

    def release(self, key_id: uuid.UUID) -> None:
        """Forget a claim whose write did not happen, so that the next call may try again."""
        self._claims.pop(key_id, None)

    def clear(self) -> None:
        """Forget every claim."""
        self._claims.clear()

    def __len__(self) -> int:
        return len(self._claims)


def _check_token_text(token: str) -> None:
    """Raises InvalidToken for text no Parley token has: too long, or other than printable ASCII
    (a NUL would reach the database otherwise, and PostgreSQL refuses it in text: a 500)."""
    if len(token) > MAX_TOKEN_CHARS or not (token.isascii() and token.isprintable()):
        raise InvalidToken()


def _check_standing(user: Any) -> None:
    """Raises InvalidToken for a deleted (None) or deactivated user."""
    if user is None:
        raise InvalidToken()
    if not user.is_active:
        raise InvalidToken("This account is deactivated.")


def _caller(row: Any, api_key_id: uuid.UUID | None = None) -> Caller:
    return Caller(row.user_id, row.is_admin, row.is_guest, row.monthly_budget_usd, api_key_id)


@traced(name="accounts.authenticate", skip_input=True)
async def authenticate(
    engine: AsyncEngine,
    jwt_key: str,
    touches: TouchThrottle,
    token: str,
    callers: CallerCache | None = None,
    issuers: ExternalIssuers | None = None,
) -> Caller:
    """The caller behind a bearer token: an access JWT, an API key, or a JWT of one of
    `issuers` (its user found by `(iss, sub)`, or made on their first token).

    Reads on a connection of its own, returned to the pool before this returns; an API key's
    stale `last_used_at` is written (and committed) there, as `touches` allows. With `callers`,
    a caller read lately is served from memory (`parley.accounts.caller_cache`).

    Args:
        engine: the app's database.
        jwt_key: the key access tokens are signed with.
        touches: the app's memory of recent `last_used_at` writes.
        token: the bearer credential.
        callers: the app's cache of recent callers.
        issuers: the external issuers whose tokens are accepted.

    Raises:
        InvalidToken: bad, expired or revoked credentials, or a deactivated or deleted user.
    """
    _check_token_text(token)
    if callers is not None and not callers.enabled:
        callers = None
    generation = CallerCache.generation()
    now = utcnow()
    digest = CallerCache.digest(token) if callers is not None else b""
    if callers is not None and (cached := callers.caller(digest, now)) is not None:
        return cached
    if not looks_like_api_key(token) and issuers is not None:
        issuer = issuers.issuer_of(token)
        if issuer is not None:  # never Parley's own key for a token naming an external issuer
            external = await issuers.verify(issuer, token)
            standing = await external_user_standing(engine, external)
            _check_standing(standing)
            caller = _caller(standing)
            if callers is not None:  # until the token expires, at the latest
                callers.keep(digest, caller, generation, external.expires_at)
            return caller
    if not looks_like_api_key(token):
        claims = decode_token(jwt_key, token, expected_type="access")
        async with engine.connect() as connection:
            row = await repository.find_user_standing(connection, claims.subject)
        _check_standing(row)
        caller = _caller(row)
        if callers is not None:  # until the token expires, at the latest
            callers.keep(digest, caller, generation, claims.expires_at)
        return caller
    async with engine.connect() as connection:
        key = await repository.find_key_holder(connection, api_key_lookup_prefix(token))
        if key is None or not secrets_match(token, key.key_hash):
            raise InvalidToken("The API key is invalid or has been revoked.")
        if key.expires_at is not None and key.expires_at <= now:
            raise InvalidToken("The API key has expired.")
        _check_standing(key)
        if touches.claim(key.key_id, key.last_used_at, now):
            try:
                await repository.touch_api_key(connection, key.key_id, now)
                await connection.commit()
            except BaseException:
                touches.release(key.key_id)  # not written: the next call may try again
                raise
    caller = _caller(key, key.key_id)
    if callers is not None:
        callers.keep(digest, caller, generation, key.expires_at)
    return caller


async def load_user(session: AsyncSession, caller: Caller) -> User:
    """The caller's user as an ORM row in `session`, for a route that changes or shows it.

    Raises:
        InvalidToken: the user was deleted or deactivated since `caller` was read.
    """
    user = await repository.get_user(session, caller.user_id)
    if user is None:
        raise InvalidToken()
    _check_standing(user)
    return user
