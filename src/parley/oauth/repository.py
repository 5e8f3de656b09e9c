"""Queries over the OAuth tables; nothing here commits.

Grants are user data: every read of a user's grants starts from `readable_grants(owner_id)`, so
another user's connection is simply not found. Codes and refresh tokens are looked up by the hash
of their secret, and spent by a conditional update, so that of two requests racing with the same
one exactly one wins.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.accounts.models import User
from parley.core.db import rowcount
from parley.core.pagination import CursorCodec, SortKey, paginate
from parley.oauth.models import OAuthClient, OAuthCode, OAuthGrant, OAuthRefreshToken

GRANTS_NEWEST_FIRST = SortKey("-created_at", OAuthGrant.created_at, descending=True)


async def get_client(session: AsyncSession, client_id: str) -> OAuthClient | None:
    """The registered client with this `client_id`, or None."""
    result = await session.execute(select(OAuthClient).where(OAuthClient.client_id == client_id))
    return result.scalar_one_or_none()


async def get_code(session: AsyncSession, code_hash: str) -> OAuthCode | None:
    """The authorization code with this hash, spent or not, or None."""
    result = await session.execute(select(OAuthCode).where(OAuthCode.code_hash == code_hash))
    return result.scalar_one_or_none()


async def spend_code(session: AsyncSession, code_id: uuid.UUID, now: datetime) -> bool:
    """Mark a code used; False if another exchange used it first."""
    result = await session.execute(
        update(OAuthCode)
        .where(OAuthCode.id == code_id, OAuthCode.used_at.is_(None))
        .values(used_at=now, updated_at=now)
    )
    return rowcount(result) == 1


async def get_refresh_token(session: AsyncSession, token_hash: str) -> OAuthRefreshToken | None:
    """The refresh token with this hash, spent or not, or None."""
    result = await session.execute(
        select(OAuthRefreshToken).where(OAuthRefreshToken.token_hash == token_hash)
    )
    return result.scalar_one_or_none()


async def spend_refresh_token(session: AsyncSession, token_id: uuid.UUID, now: datetime) -> bool:
    """Mark a refresh token spent; False if another request spent it first."""
    result = await session.execute(
        update(OAuthRefreshToken)
        .where(OAuthRefreshToken.id == token_id, OAuthRefreshToken.spent_at.is_(None))
        .values(spent_at=now, updated_at=now)
    )
    return rowcount(result) == 1


async def get_grant(session: AsyncSession, grant_id: uuid.UUID) -> OAuthGrant | None:
    """A grant by id, live or revoked (for the token endpoint, which knows it from a secret)."""
    return await session.get(OAuthGrant, grant_id)


async def revoke_grant(session: AsyncSession, grant_id: uuid.UUID, now: datetime) -> None:
    """Revoke a grant (if it is live): every token of it stops working."""
    await session.execute(
        update(OAuthGrant)
        .where(OAuthGrant.id == grant_id, OAuthGrant.revoked_at.is_(None))
        .values(revoked_at=now, updated_at=now)
    )


async def live_grant_holder(
    session: AsyncSession, grant_id: uuid.UUID, user_id: uuid.UUID
) -> tuple[OAuthGrant, User] | None:
    """A live grant of this user, with the user (active or not), or None."""
    result = await session.execute(
        select(OAuthGrant, User)
        .join(User, User.id == OAuthGrant.user_id)
        .where(
            OAuthGrant.id == grant_id,
            OAuthGrant.user_id == user_id,
            OAuthGrant.revoked_at.is_(None),
        )
    )
    row = result.one_or_none()
    return None if row is None else (row[0], row[1])


async def touch_grant(session: AsyncSession, grant_id: uuid.UUID, now: datetime) -> None:
    """Record that a grant's token was just used."""
    await session.execute(
        update(OAuthGrant).where(OAuthGrant.id == grant_id).values(last_used_at=now)
    )


def readable_grants(owner_id: uuid.UUID) -> Select[Any]:
    """The owner's live grants: the start of every connection read."""
    return select(OAuthGrant).where(OAuthGrant.user_id == owner_id, OAuthGrant.revoked_at.is_(None))


async def list_grants(
    session: AsyncSession,
    owner_id: uuid.UUID,
    *,
    codec: CursorCodec,
    cursor: str | None,
    limit: int,
) -> tuple[Sequence[OAuthGrant], str | None]:
    """A page of the owner's live grants, newest first."""
    statement, finish = paginate(
        readable_grants(owner_id),
        sort=GRANTS_NEWEST_FIRST,
        id_column=OAuthGrant.id,
        cursor=cursor,
        limit=limit,
        codec=codec,
    )
    rows = (await session.execute(statement)).scalars().all()
    return finish(rows)


async def clients_by_id(
    session: AsyncSession, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, OAuthClient]:
    """The clients with these row ids (those of a page of grants), by id."""
    if not ids:
        return {}
    result = await session.execute(select(OAuthClient).where(OAuthClient.id.in_(set(ids))))
    return {client.id: client for client in result.scalars()}


async def get_owned_grant(
    session: AsyncSession, owner_id: uuid.UUID, grant_id: uuid.UUID
) -> OAuthGrant | None:
    """One of the owner's live grants, or None (also when it is someone else's)."""
    result = await session.execute(readable_grants(owner_id).where(OAuthGrant.id == grant_id))
    grant: OAuthGrant | None = result.scalar_one_or_none()
    return grant
