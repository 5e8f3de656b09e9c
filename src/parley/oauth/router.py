"""The user's OAuth connections over HTTP (the MCP clients they allowed):

- `GET /api/users/me/connections`
- `DELETE /api/users/me/connections/{connection_id}`

The protocol endpoints are in `parley.oauth.routes` (metadata, registration, token) and
`parley.oauth.consent` (the authorization page).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from parley.accounts.dependencies import CurrentCaller
from parley.core.dependencies import PageDep, SessionDep, cursor_codec_of
from parley.core.errors import InvalidToken, NotAuthenticated, NotFound
from parley.core.responses import Envelope, Page, error_responses, ok
from parley.oauth.schemas import ConnectionPublic
from parley.oauth.service import ConnectionService


async def get_connection_service(request: Request, session: SessionDep) -> ConnectionService:
    """Connection use cases over the route's session."""
    return ConnectionService(session, cursor_codec_of(request))


ConnectionServiceDep = Annotated[ConnectionService, Depends(get_connection_service)]

connections_router = APIRouter(prefix="/api/users", tags=["users"])


@connections_router.get(
    "/me/connections",
    summary="List connected MCP clients",
    responses=error_responses(NotAuthenticated, InvalidToken),
)
async def list_connections(
    caller: CurrentCaller, connections: ConnectionServiceDep, page: PageDep
) -> Envelope[Page[ConnectionPublic]]:
    """The MCP clients the caller allowed through the OAuth consent page, newest first."""
    items, next_cursor = await connections.list(caller, cursor=page.cursor, limit=page.limit)
    return ok(Page(items=items, next_cursor=next_cursor))


@connections_router.delete(
    "/me/connections/{connection_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Disconnect an MCP client",
    responses=error_responses(NotAuthenticated, InvalidToken, NotFound),
)
async def revoke_connection(
    connection_id: uuid.UUID, caller: CurrentCaller, connections: ConnectionServiceDep
) -> Response:
    """Revoke a connection: its access and refresh tokens stop working at once."""
    await connections.revoke(caller, connection_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
