"""Queries over users, refresh tokens and API keys: every statement of the accounts domain. Never
commits.

API keys are user data: every read of them starts from `readable_api_keys(owner_id)`. Looking a key
up by its prefix (authentication) is the one unscoped path, and it is how the owner is learnt.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.engine import CursorResult, Row
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from parley.accounts.models import ApiKey, ExternalIdentity, RefreshToken, User
from parley.core.db import LIKE_ESCAPE, contains_pattern, new_id
from parley.core.pagination import CursorCodec, SortKey, paginate

USERS_NEWEST_FIRST = SortKey("-created_at", User.created_at, descending=True)
API_KEYS_NEWEST_FIRST = SortKey("-created_at", ApiKey.created_at, descending=True)


async def get_user(session: AsyncSession, user_id: uuid.UUID) -> User | None:
    """The user with this id, active or not."""
    return await session.get(User, user_id)


async def get_user_by_email(session: AsyncSession, email: str) -> User | None:
    """The user with this (already lower-cased) email."""
    result = await session.execute(select(User).where(User.email == email))
    return result.scalar_one_or_none()


async def list_users(
    session: AsyncSession, *, codec: CursorCodec, cursor: str | None, limit: int, q: str | None
) -> tuple[list[User], str | None]:
    """A page of all users, newest first, optionally filtered by email or name."""
    statement: Select[Any] = select(User)
    if q:
        pattern = contains_pattern(q.lower())
        statement = statement.where(
            or_(
                User.email.like(pattern, escape=LIKE_ESCAPE),
                func.lower(User.display_name).like(pattern, escape=LIKE_ESCAPE),
            )
        )
    statement, finish = paginate(
        statement,
        sort=USERS_NEWEST_FIRST,
        id_column=User.id,
        cursor=cursor,
        limit=limit,
        codec=codec,
    )
    rows = (await session.execute(statement)).scalars().all()
    return finish(rows)


def add_refresh_token(
    session: AsyncSession, *, user_id: uuid.UUID, family_id: uuid.UUID, expires_at: datetime
) -> RefreshToken:
    """Record a new refresh token (flushed with the session)."""
    token = RefreshToken(user_id=user_id, family_id=family_id, expires_at=expires_at)
    session.add(token)
    return token


async def get_refresh_token(session: AsyncSession, token_id: uuid.UUID) -> RefreshToken | None:
    """The refresh token row with this `jti`."""
    return await session.get(RefreshToken, token_id)


async def spend_refresh_token(session: AsyncSession, token_id: uuid.UUID, now: datetime) -> bool:
    """Mark a live refresh token spent, atomically: of two racing refreshes, exactly one wins."""
    result: CursorResult[Any] = await session.execute(  # type: ignore[assignment]
        update(RefreshToken)
        .where(
            RefreshToken.id == token_id,
            RefreshToken.spent_at.is_(None),
            RefreshToken.revoked_at.is_(None),
            RefreshToken.expires_at > now,
        )
        .values(spent_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1


async def revoke_family(session: AsyncSession, family_id: uuid.UUID, now: datetime) -> None:
    """Revoke every token of a refresh family."""
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )


async def revoke_user_refresh_tokens(
    session: AsyncSession, user_id: uuid.UUID, now: datetime
) -> None:
    """Revoke every refresh token a user holds (password change, guest upgrade, deactivation)."""
    await session.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )


def readable_api_keys(owner_id: uuid.UUID) -> Select[ApiKey]:
    """The owner's keys that are not revoked: the start of every API key read."""
    return select(ApiKey).where(ApiKey.user_id == owner_id, ApiKey.revoked_at.is_(None))


async def list_api_keys(
    session: AsyncSession,
    owner_id: uuid.UUID,
    *,
    codec: CursorCodec,
    cursor: str | None,
    limit: int,
) -> tuple[Sequence[ApiKey], str | None]:
    """A page of the owner's keys, newest first."""
    statement, finish = paginate(
        readable_api_keys(owner_id),
        sort=API_KEYS_NEWEST_FIRST,
        id_column=ApiKey.id,
        cursor=cursor,
        limit=limit,
        codec=codec,
    )
    rows = (await session.execute(statement)).scalars().all()
    return finish(rows)


async def get_api_key(
    session: AsyncSession, owner_id: uuid.UUID, key_id: uuid.UUID
) -> ApiKey | None:
    """One of the owner's keys, or None (also when it is someone else's)."""
    result = await session.execute(readable_api_keys(owner_id).where(ApiKey.id == key_id))
    return result.scalar_one_or_none()


async def count_api_keys(session: AsyncSession, owner_id: uuid.UUID) -> int:
    """How many live keys the owner holds."""
    count = await session.scalar(
        select(func.count()).select_from(readable_api_keys(owner_id).subquery())
    )
    return count or 0


# -- callers, as plain rows (authentication) ----------------------------------------------------
# Authentication reads these columns on a connection of its own rather than loading ORM objects
# into a session. The statements are built once, not per call (see bench/findings.md).

_CALLER_COLUMNS = (
    User.id.label("user_id"),
    User.is_active,
    User.is_admin,
    User.is_guest,
    User.monthly_budget_usd,
)
_KEY_HOLDER = (
    select(
        ApiKey.id.label("key_id"),
        ApiKey.key_hash,
        ApiKey.expires_at,
        ApiKey.last_used_at,
        *_CALLER_COLUMNS,
    )
    .join(User, User.id == ApiKey.user_id)
    .where(ApiKey.prefix == bindparam("prefix"), ApiKey.revoked_at.is_(None))
)
_USER_STANDING = select(*_CALLER_COLUMNS).where(User.id == bindparam("user_id"))
_EXTERNAL_STANDING = (
    select(*_CALLER_COLUMNS)
    .join(ExternalIdentity, ExternalIdentity.user_id == User.id)
    .where(
        ExternalIdentity.issuer == bindparam("issuer"),
        ExternalIdentity.subject == bindparam("subject"),
    )
)
_USER_BY_EMAIL = select(User.id).where(User.email == bindparam("email"))


async def find_key_holder(connection: AsyncConnection, prefix: str) -> Row[*tuple[Any, ...]] | None:
    """The unrevoked key with this lookup prefix (`key_id`, `key_hash`, `expires_at`,
    `last_used_at`) and its owner's standing (`user_id`, `is_active`, `is_admin`, `is_guest`,
    `monthly_budget_usd`), whoever that is: authentication only."""
    return (await connection.execute(_KEY_HOLDER, {"prefix": prefix})).one_or_none()


async def find_user_standing(
    connection: AsyncConnection, user_id: uuid.UUID
) -> Row[*tuple[Any, ...]] | None:
    """The user's standing (`user_id`, `is_active`, `is_admin`, `is_guest`,
    `monthly_budget_usd`)."""
    return (await connection.execute(_USER_STANDING, {"user_id": user_id})).one_or_none()


async def find_external_standing(
    connection: AsyncConnection, issuer: str, subject: str
) -> Row[*tuple[Any, ...]] | None:
    """The standing of the user behind an external issuer's subject (as `find_user_standing`),
    or None before their first token."""
    return (
        await connection.execute(_EXTERNAL_STANDING, {"issuer": issuer, "subject": subject})
    ).one_or_none()


async def email_taken(connection: AsyncConnection, email: str) -> bool:
    """Whether a user already has this (lower-cased) email."""
    return (await connection.execute(_USER_BY_EMAIL, {"email": email})).first() is not None


async def add_external_user(
    connection: AsyncConnection,
    *,
    issuer: str,
    subject: str,
    email: str | None,
    claimed_email: str | None,
    display_name: str,
) -> None:
    """Insert a user and their external identity (the caller's transaction commits; a unique
    `(issuer, subject)` or `users.email` taken meanwhile raises IntegrityError)."""
    user_id = new_id()
    await connection.execute(
        insert(User).values(
            id=user_id,
            email=email,
            password_hash=None,
            display_name=display_name,
            is_guest=False,
            is_admin=False,
            is_active=True,
        )
    )
    await connection.execute(
        insert(ExternalIdentity).values(
            user_id=user_id, issuer=issuer, subject=subject, email=claimed_email
        )
    )


async def touch_api_key(connection: AsyncConnection, key_id: uuid.UUID, now: datetime) -> None:
    """Record that the key was used now."""
    await connection.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=now))


async def delete_refresh_tokens_expired_before(session: AsyncSession, before: datetime) -> int:
    """Delete the refresh tokens that expired before `before` (a token past its expiry is refused
    by its signature's `exp` before its row is read); how many."""
    result = await session.execute(
        delete(RefreshToken)
        .where(RefreshToken.expires_at < before)
        .execution_options(synchronize_session=False)
    )
    return int(getattr(result, "rowcount", 0) or 0)
