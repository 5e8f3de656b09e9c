"""The SDK's Streamable HTTP session manager, with Parley's caps on stateful sessions.

A session (with `MCP_STATELESS=false`) is a server task and its streams in the memory of the worker
that opened it, about 46 KB, kept until the client ends it or it has had no request in flight for
`MCP_SESSION_IDLE_SECONDS`. So that one user cannot fill a worker with them (a guest once opened
2,000 in 7 s), a new session is refused while its user holds `MCP_MAX_SESSIONS_PER_USER` (429
`rate_limited`) or the worker holds `MCP_MAX_SESSIONS` (503 `service_unavailable`), each with
`Retry-After` and in the error envelope. A refusal never ends anyone's open session.

The SDK decides admission in `_admit_session`, under its session-creation lock and before the
opening request is served; the caps are checked there, so concurrent openings cannot slip past
them. The SDK keeps each session's owner in `_session_owners` (the principal `parley.mcp.endpoint`
hands it, one per user), which is what the per-user count reads. Both are private to the pinned
SDK: tests/mcp/test_sessions.py fails if an upgrade changes them.

`start_session_manager` builds it over Parley's MCP server, and `principal` is the SDK's view of a
user. Imported with the first `/mcp` request, like the SDK itself (see `parley.engines`).
"""

from __future__ import annotations

import math
from typing import Any

from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser, AuthorizationContext
from mcp.server.auth.provider import AccessToken
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings

from parley.core.errors import RateLimited, ServiceUnavailable
from parley.mcp.server import build_mcp_server
from parley.settings import Settings
from parley.tools.registry import ToolRegistry


class CappedSessionManager(StreamableHTTPSessionManager):
    """A session manager that refuses new sessions past a per-user and an overall cap."""

    def __init__(
        self,
        app: Server[Any],
        *,
        stateless: bool,
        security_settings: TransportSecuritySettings,
        max_sessions: int,
        max_sessions_per_user: int,
        idle_seconds: float,
    ) -> None:
        super().__init__(
            app,
            stateless=stateless,
            security_settings=security_settings,
            session_idle_timeout=idle_seconds,
            max_sessions=max_sessions,
        )
        self.max_sessions_per_user = max_sessions_per_user
        # Idle sessions free room within this; one kept busy by its client does not.
        self._retry_after = math.ceil(idle_seconds)

    def _admit_session(
        self, requestor: AuthorizationContext | None
    ) -> StreamableHTTPServerTransport | None:
        """Register a new session for `requestor`, or refuse it at a cap.

        Raises:
            RateLimited: the user already holds `max_sessions_per_user` sessions.
            ServiceUnavailable: this worker already holds `max_sessions` sessions.
        """
        held = sum(1 for owner in self._session_owners.values() if owner == requestor)
        if held >= self.max_sessions_per_user:
            raise RateLimited(
                self._retry_after,
                f"You already have {held} open MCP sessions, the most allowed: end one "
                "(DELETE /mcp with its Mcp-Session-Id) or wait until an idle one expires.",
            )
        if self.max_sessions is not None and len(self._server_instances) >= self.max_sessions:
            raise ServiceUnavailable(
                "The MCP server has as many open sessions as it can hold; try again later.",
                headers={"Retry-After": str(self._retry_after)},
            )
        return super()._admit_session(requestor)


def start_session_manager(
    registry: ToolRegistry, settings: Settings, *, stateless: bool
) -> CappedSessionManager:
    """The session manager of Parley's MCP server over `registry`, with the settings' caps."""
    return CappedSessionManager(
        build_mcp_server(registry),
        stateless=stateless,
        # `parley.mcp.endpoint` has checked Host and Origin before the SDK sees a request.
        security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        max_sessions=settings.mcp_max_sessions,
        max_sessions_per_user=settings.mcp_max_sessions_per_user,
        idle_seconds=settings.mcp_session_idle_seconds,
    )


def principal(user_id: str, *, issuer: str, client_id: str) -> AuthenticatedUser:
    """A user as the SDK's authenticated principal (the subject its session ownership checks)."""
    return AuthenticatedUser(
        AccessToken(
            token="",  # the credential itself is not needed past the endpoint's check
            client_id=client_id,
            scopes=[],
            subject=user_id,
            claims={"iss": issuer, "sub": user_id},
        )
    )
