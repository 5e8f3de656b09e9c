"""The `/mcp` endpoint: the MCP Streamable HTTP transport, behind Parley's own checks.

Each HTTP request is checked in this order before the SDK's session manager sees it:

1. Host and Origin (DNS-rebinding protection, with the SDK's own checker and the allowlists from
   settings): a bad Host is 421, a bad Origin 403. The SDK's transport checks them again.
2. `Authorization: Bearer <access token or API key>`, through the same `AccountService.authenticate`
   as the REST API: none or a bad one is 401 with `WWW-Authenticate: Bearer` and the error
   envelope. Every request is authenticated, so a revoked key or a deactivated user stops at once.

The authenticated user is handed to the SDK as `scope["user"]` (its `AuthenticatedUser`, with the
user id as subject): in stateful mode the SDK binds each session id to the principal that opened
it and answers 404 to anyone else presenting it. The user also rides on `request.state.principal`,
where the tool calls pick it up (`parley.mcp.server`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi.security.utils import get_authorization_scheme_param
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecurityMiddleware, TransportSecuritySettings
from starlette.authentication import AuthCredentials
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from parley.accounts.service import AccountService, Principal
from parley.core.dependencies import (
    get_cursor_codec,
    get_database,
    get_rate_limiter,
    get_settings,
)
from parley.core.errors import NotAuthenticated, ParleyError, ServiceUnavailable
from parley.core.responses import error_response
from parley.mcp.server import McpServer, build_mcp_server
from parley.settings import Settings
from parley.tools.registry import ToolRegistry

logger = logging.getLogger(__name__)

# The issuer and client id Parley's principals carry in the SDK's session-ownership check.
PRINCIPAL_ISSUER = "parley"
PRINCIPAL_CLIENT_ID = "parley"


class McpEndpoint:
    """The ASGI app served at `/mcp`.

    `running()` must be entered for the endpoint to serve (the app's lifespan does it); each entry
    starts a fresh SDK session manager.
    """

    def __init__(self, settings: Settings, registry: ToolRegistry) -> None:
        self.server: McpServer = build_mcp_server(registry)
        self.stateless = settings.mcp_stateless
        self.security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=list(settings.mcp_allowed_hosts),
            allowed_origins=list(settings.mcp_allowed_origins),
        )
        self._guard = TransportSecurityMiddleware(self.security)
        self._manager: StreamableHTTPSessionManager | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the SDK's session manager for as long as the context is open.

        The manager keeps an anyio task group open for its sessions. It is entered and left in a
        task of its own, so the caller may enter and leave this context from different tasks (a
        test harness driving the app's lifespan does).
        """
        manager = StreamableHTTPSessionManager(
            app=self.server, stateless=self.stateless, security_settings=self.security
        )
        started = asyncio.Event()
        stop = asyncio.Event()

        async def host() -> None:
            async with manager.run():
                started.set()
                await stop.wait()

        task = asyncio.create_task(host(), name="mcp-session-manager")
        waiter = asyncio.create_task(started.wait())
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if not started.is_set():
            waiter.cancel()
            await task  # re-raises why the manager could not start
        self._manager = manager
        try:
            yield
        finally:
            self._manager = None
            stop.set()
            await task

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        refusal = await self._guard.validate_request(request, is_post=False)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        manager = self._manager
        try:
            if manager is None:
                raise ServiceUnavailable("The MCP server is not running.")
            principal = await self._authenticate(request)
        except ParleyError as exc:
            await error_response(exc)(scope, receive, send)
            return
        request.state.principal = principal
        user_id = str(principal.user.id)
        scope["user"] = AuthenticatedUser(
            AccessToken(
                token="",  # the credential itself is not needed past this point
                client_id=PRINCIPAL_CLIENT_ID,
                scopes=[],
                subject=user_id,
                claims={"iss": PRINCIPAL_ISSUER, "sub": user_id},
            )
        )
        scope["auth"] = AuthCredentials([])
        await manager.handle_request(scope, receive, send)

    @staticmethod
    async def _authenticate(request: Request) -> Principal:
        """The caller behind the request's bearer credential.

        Raises:
            NotAuthenticated: no bearer credential was sent.
            InvalidToken: it is bad, expired or revoked, or its user is deactivated.
        """
        scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
        if scheme.lower() != "bearer" or not token:
            raise NotAuthenticated()
        # A session of its own, closed before the MCP exchange (which may stream) begins.
        async with get_database(request).sessionmaker() as session:
            accounts = AccountService(
                session, get_settings(request), get_rate_limiter(request), get_cursor_codec(request)
            )
            return await accounts.authenticate(token)
