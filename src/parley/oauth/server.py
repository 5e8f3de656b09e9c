"""The authorization server as the app holds it: `OAuthServer` gives the app its routes and, on
first use, the provider (`parley.oauth.provider`) and the SDK's handlers (`parley.oauth.routes`).

Both import the MCP SDK, which takes a second or more to load; building the app must not
(tests/test_startup.py), so this module names the routes and leaves their handlers to be made by
the first request that reaches one, as `/mcp` does with the SDK's session manager.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from parley.oauth.tokens import PROTECTED_RESOURCE_METADATA_PATH

if TYPE_CHECKING:
    from parley.core.db import Database
    from parley.core.ratelimit import RateLimiter
    from parley.oauth.provider import ParleyOAuthProvider
    from parley.settings import Settings

# name: (path, methods) of the machine-facing endpoints (`parley.oauth.routes`).
ROUTES: dict[str, tuple[str, list[str]]] = {
    "authorization_server": ("/.well-known/oauth-authorization-server", ["GET", "OPTIONS"]),
    "protected_resource": (PROTECTED_RESOURCE_METADATA_PATH, ["GET", "OPTIONS"]),
    "protected_resource_mcp": (f"{PROTECTED_RESOURCE_METADATA_PATH}/mcp", ["GET", "OPTIONS"]),
    "register": ("/oauth/register", ["POST", "OPTIONS"]),
    "token": ("/oauth/token", ["POST", "OPTIONS"]),
}


class OAuthServer:
    """Parley's authorization server for `/mcp`, made on first use.

    Args:
        settings: the app's settings.
        database: the running app's database (it exists once the lifespan runs).
        limiter: the running app's rate limiter.
    """

    def __init__(
        self,
        settings: Settings,
        database: Callable[[], Database],
        limiter: Callable[[], RateLimiter],
    ) -> None:
        self.settings = settings
        self.database = database
        self.limiter = limiter

    @cached_property
    def provider(self) -> ParleyOAuthProvider:
        """The SDK's provider interface over Parley's database (`parley.oauth.provider`)."""
        module = importlib.import_module("parley.oauth.provider")
        provider: ParleyOAuthProvider = module.ParleyOAuthProvider(self.settings, self.database)
        return provider

    @cached_property
    def handlers(self) -> dict[str, ASGIApp]:
        """The SDK-wrapped endpoints, by name (`parley.oauth.routes`)."""
        module = importlib.import_module("parley.oauth.routes")
        handlers: dict[str, ASGIApp] = module.oauth_handlers(
            self.provider, self.settings, self.limiter
        )
        return handlers

    def routes(self) -> list[Route]:
        """The routes of the machine-facing endpoints, their handlers made on first request."""
        return [
            Route(path, endpoint=_Deferred(self, name), methods=methods)
            for name, (path, methods) in ROUTES.items()
        ]


class _Deferred:
    """An ASGI app that hands each request to a handler of `server`, made on first request."""

    def __init__(self, server: OAuthServer, name: str) -> None:
        self.server = server
        self.name = name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler: Any = self.server.handlers[self.name]
        await handler(scope, receive, send)
