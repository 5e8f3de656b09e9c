"""API key use cases: create (the secret is shown once), list, revoke.

Keys are owner-scoped: another user's key is simply not found. A key created or revoked is told
as an event (`parley.accounts.events`, never with its secret) in the transaction of the change.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from parley.accounts import repository
from parley.accounts.events import API_KEY_CREATED, API_KEY_REVOKED, ApiKeyCreated, ApiKeyRevoked
from parley.accounts.models import ApiKey, User
from parley.core.db import utcnow
from parley.core.errors import Conflict, NotFound, ValidationFailed
from parley.core.pagination import CursorCodec
from parley.core.security import generate_api_key
from parley.core.telemetry import traced
from parley.events.outbox import add_event

MAX_KEYS_PER_USER = 100


class ApiKeyService:
    """A user's API keys, over one database session."""

    def __init__(self, session: AsyncSession, codec: CursorCodec) -> None:
        self.session = session
        self.codec = codec

    @traced(name="api_keys.create")
    async def create(
        self, owner: User, *, name: str, expires_at: datetime | None
    ) -> tuple[ApiKey, str]:
        """A new key for `owner`; returns the row and the secret, which is not stored."""
        if expires_at is not None and expires_at <= utcnow():
            raise ValidationFailed.for_field("body.expires_at", "The expiry must be in the future.")
        if await repository.count_api_keys(self.session, owner.id) >= MAX_KEYS_PER_USER:
            raise Conflict(f"A user may hold at most {MAX_KEYS_PER_USER} API keys; revoke one.")
        secret, prefix, key_hash = generate_api_key()
        key = ApiKey(
            user_id=owner.id, name=name, prefix=prefix, key_hash=key_hash, expires_at=expires_at
        )
        self.session.add(key)
        await self.session.flush()
        await add_event(
            self.session,
            API_KEY_CREATED,
            subject=f"api_keys/{key.id}",
            user_id=owner.id,
            data=ApiKeyCreated.model_validate(key, from_attributes=True).model_dump(mode="json"),
        )
        await self.session.commit()
        return key, secret

    @traced(name="api_keys.list")
    async def list(
        self, owner: User, *, cursor: str | None, limit: int
    ) -> tuple[Sequence[ApiKey], str | None]:
        """A page of the owner's live keys, newest first."""
        return await repository.list_api_keys(
            self.session, owner.id, codec=self.codec, cursor=cursor, limit=limit
        )

    @traced(name="api_keys.revoke")
    async def revoke(self, owner: User, key_id: uuid.UUID) -> None:
        """Revoke one of the owner's keys; it stops working at once."""
        key = await repository.get_api_key(self.session, owner.id, key_id)
        if key is None:
            raise NotFound("No such API key.")
        key.revoked_at = utcnow()
        await add_event(
            self.session,
            API_KEY_REVOKED,
            subject=f"api_keys/{key.id}",
            user_id=owner.id,
            data=ApiKeyRevoked.model_validate(key, from_attributes=True).model_dump(mode="json"),
        )
        await self.session.commit()
