"""Connection use cases: the MCP clients a user allowed (their OAuth grants), listed and revoked.

Grants are owner-scoped: another user's connection is simply not found. A revoked grant's access
tokens are refused by `/mcp` on their next request (it checks the grant on every one) and its
refresh tokens can no longer be spent.
"""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from parley.accounts.authentication import Owner
from parley.core.db import utcnow
from parley.core.errors import NotFound
from parley.core.pagination import CursorCodec
from parley.core.telemetry import traced
from parley.oauth import repository
from parley.oauth.schemas import ConnectionPublic


class ConnectionService:
    """A user's OAuth connections, over one database session."""

    def __init__(self, session: AsyncSession, codec: CursorCodec) -> None:
        self.session = session
        self.codec = codec

    @traced(name="oauth.connections.list")
    async def list(
        self, owner: Owner, *, cursor: str | None, limit: int
    ) -> tuple[list[ConnectionPublic], str | None]:
        """A page of the owner's live connections, newest first."""
        grants, next_cursor = await repository.list_grants(
            self.session, owner.id, codec=self.codec, cursor=cursor, limit=limit
        )
        clients = await repository.clients_by_id(self.session, [g.client_id for g in grants])
        items = []
        for grant in grants:
            client = clients.get(grant.client_id)
            items.append(
                ConnectionPublic(
                    id=grant.id,
                    client_id=client.client_id if client else "",
                    client_name=client.client_name if client else None,
                    resource=grant.resource,
                    scope=grant.scope,
                    created_at=grant.created_at,
                    last_used_at=grant.last_used_at,
                )
            )
        return items, next_cursor

    @traced(name="oauth.connections.revoke")
    async def revoke(self, owner: Owner, grant_id: uuid.UUID) -> None:
        """Revoke one of the owner's connections; its tokens stop working at once."""
        grant = await repository.get_owned_grant(self.session, owner.id, grant_id)
        if grant is None:
            raise NotFound("No such connection.")
        await repository.revoke_grant(self.session, grant.id, utcnow())
        await self.session.commit()
