"""The `/mcp` endpoint: the MCP Streamable HTTP transport, behind Parley's own checks.

Each HTTP request is checked in this order before the SDK's session manager sees it:

1. Host and Origin (DNS-rebinding protection, against the allowlists of settings; unset, the
   loopback names while the server listens on loopback, and no check while it listens on another
   address, where requests carry whatever name a load balancer or DNS gave): a bad Host is 421, a
   bad Origin 403.
2. `Authorization: Bearer <token>`: an MCP access token of Parley's authorization server
   (`parley.oauth`: bound to this `/mcp` URL, its grant checked live), or anything the REST API
   accepts (access token, API key, external JWT), through the same `authenticate`. None or a bad
   one is 401 with the error envelope and `WWW-Authenticate: Bearer resource_metadata="..."`
   naming the protected-resource metadata (RFC 9728 section 5.1), where an MCP client starts
   its OAuth flow. Every request is authenticated, so a revoked key or connection, or a
   deactivated user, stops at once.

By default (`MCP_STATELESS`) no session is kept: each request stands alone, so any worker serves
it. With sessions, a new one past its user's or the worker's cap is refused in the envelope
(`parley.mcp.sessions`).

The SDK and its session manager (`parley.mcp.sessions`, reached through `parley.engines`) are
started with the first request to `/mcp`, not with the app, so that a server nobody reaches over
MCP starts faster.

The authenticated user is handed to the SDK as `scope["user"]` (its `AuthenticatedUser`, with the
user id as subject): in stateful mode the SDK binds each session id to the principal that opened
it and answers 404 to anyone else presenting it. The user's row also rides on `request.state.user`,
where the tool calls pick it up (`parley.mcp.server`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi.security.utils import get_authorization_scheme_param
from starlette.authentication import AuthCredentials
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from parley import engines
from parley.accounts.authentication import load_user
from parley.accounts.dependencies import authenticate_request
from parley.accounts.models import User
from parley.core.dependencies import database_of
from parley.core.errors import InvalidToken, NotAuthenticated, ParleyError, ServiceUnavailable
from parley.core.responses import error_response
from parley.oauth.tokens import looks_like_access_token, resource_metadata_url, resource_url
from parley.settings import Settings
from parley.tools.registry import ToolRegistry

if TYPE_CHECKING:
    from parley.mcp.sessions import CappedSessionManager
    from parley.oauth.provider import ParleyOAuthProvider

logger = logging.getLogger(__name__)

# The issuer and client id Parley's principals carry in the SDK's session-ownership check.
PRINCIPAL_ISSUER = "parley"
PRINCIPAL_CLIENT_ID = "parley"


def _allowed(value: str, allowlist: list[str]) -> bool:
    """Whether a Host or Origin value is listed, exactly or as `name:*` (any port), the way the
    SDK's own check matches them."""
    return value in allowlist or any(
        value.startswith(allowed[:-1]) for allowed in allowlist if allowed.endswith(":*")
    )


def _challenge(request: Request, refusal: NotAuthenticated) -> str:
    """`WWW-Authenticate` of a 401 on `/mcp`: where the protected-resource metadata is (RFC 9728
    section 5.1), and `error="invalid_token"` when a credential was sent (RFC 6750 section 3)."""
    challenge = f'Bearer resource_metadata="{resource_metadata_url(request)}"'
    if isinstance(refusal, InvalidToken):
        challenge += ', error="invalid_token"'
    return challenge


@dataclass(frozen=True)
class HeaderGuard:
    """DNS-rebinding protection: the `Host` and `Origin` values `/mcp` accepts (None: any)."""

    hosts: list[str] | None
    origins: list[str] | None

    @classmethod
    def from_settings(cls, settings: Settings) -> HeaderGuard:
        return cls(settings.effective_mcp_allowed_hosts, settings.effective_mcp_allowed_origins)

    def refusal(self, request: Request) -> Response | None:
        """421 for a Host that is not allowed, 403 for an Origin that is not; None to go on."""
        if self.hosts is not None and not _allowed(request.headers.get("host", ""), self.hosts):
            return PlainTextResponse("Invalid Host header", status_code=421)
        origin = request.headers.get("origin")
        if origin and self.origins is not None and not _allowed(origin, self.origins):
            return PlainTextResponse("Invalid Origin header", status_code=403)
        return None


@dataclass
class _Runtime:
    """The SDK's side of the endpoint, once started: the session manager, and the task hosting
    the manager's task group (stopped by setting `stop`)."""

    manager: CappedSessionManager
    task: asyncio.Task[None]
    stop: asyncio.Event


class McpEndpoint:
    """The ASGI app served at `/mcp`.

    It serves while `running()` is entered (the app's lifespan does it); the SDK's session
    manager is started by the first request and stopped when `running()` is left.
    """

    def __init__(self, settings: Settings, registry: ToolRegistry) -> None:
        self.settings = settings
        self.registry = registry
        self.stateless = settings.mcp_stateless
        self.guard = HeaderGuard.from_settings(settings)
        self._serving = False
        self._runtime: _Runtime | None = None
        self._starting = asyncio.Lock()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Serve requests for as long as the context is open; on leaving it, stop the session
        manager if a request started it."""
        self._serving = True
        try:
            yield
        finally:
            self._serving = False
            runtime, self._runtime = self._runtime, None
            if runtime is not None:
                runtime.stop.set()
                await runtime.task

    async def _started(self) -> _Runtime:
        """The runtime, started on first use.

        The manager keeps an anyio task group open for its sessions; it is entered and left in a
        task of its own, so that no request's task owns it.

        Raises:
            ServiceUnavailable: the app is not serving (starting up or shutting down).
        """
        async with self._starting:
            if not self._serving:
                raise ServiceUnavailable("The MCP server is not running.")
            if self._runtime is not None:
                return self._runtime
            manager: CappedSessionManager = engines.mcp_sessions().start_session_manager(
                self.registry, self.settings, stateless=self.stateless
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
            self._runtime = _Runtime(manager, task, stop)
            return self._runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        refusal = self.guard.refusal(request)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        try:
            runtime = await self._started()
        except ParleyError as exc:
            await error_response(exc)(scope, receive, send)
            return
        try:
            user = await self._authenticate(request)
        except NotAuthenticated as exc:
            exc.headers["WWW-Authenticate"] = _challenge(request, exc)
            await error_response(exc)(scope, receive, send)
            return
        except ParleyError as exc:
            await error_response(exc)(scope, receive, send)
            return
        request.state.user = user
        user_id = str(user.id)
        scope["user"] = engines.mcp_sessions().principal(
            user_id, issuer=PRINCIPAL_ISSUER, client_id=PRINCIPAL_CLIENT_ID
        )
        scope["auth"] = AuthCredentials([])
        try:
            await runtime.manager.handle_request(scope, receive, send)
        except ParleyError as exc:
            # A new session refused at a cap, before anything was sent.
            await error_response(exc)(scope, receive, send)

    @staticmethod
    async def _authenticate(request: Request) -> User:
        """The user behind the request's bearer credential.

        Raises:
            NotAuthenticated: no bearer credential was sent.
            InvalidToken: it is bad, expired or revoked (an MCP access token: for another
                resource, or its connection revoked), or its user is deactivated.
        """
        scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
        if scheme.lower() != "bearer" or not token:
            raise NotAuthenticated()
        if looks_like_access_token(token):
            provider: ParleyOAuthProvider = request.app.state.oauth.provider
            return await provider.user_for_access_token(token, resource=resource_url(request))
        caller = await authenticate_request(request, token)
        # A session of its own, closed before the MCP exchange (which may stream) begins.
        async with database_of(request).sessionmaker() as session:
            return await load_user(session, caller)
