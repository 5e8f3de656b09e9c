"""The application factory: `create_app(settings)` wires the lifespan (database, Redis, rate
limiter), the middleware, the error handlers and every router.

`uvicorn --factory parley.app:create_app` (what `parley serve` runs) builds it from the environment.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi.routing import APIRoute
from redis.asyncio import Redis
from starlette.middleware.cors import CORSMiddleware

from parley import __version__
from parley.accounts.admin_router import admin_users_router
from parley.accounts.router import auth_router, users_router
from parley.core.db import Database
from parley.core.logging import configure_logging
from parley.core.middleware import (
    BodyLimitMiddleware,
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
)
from parley.core.pagination import CursorCodec
from parley.core.ratelimit import RateLimiter
from parley.core.responses import install_error_handlers
from parley.core.security import warm_up_password_hashing
from parley.core.telemetry import configure_tracing
from parley.health import health_router
from parley.settings import Settings


def _operation_id(route: APIRoute) -> str:
    """`auth-register`-style ids, so generated clients get readable names."""
    tag = route.tags[0] if route.tags else "default"
    return f"{tag}-{route.name}".replace("_", "-")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build a Parley app.

    Args:
        settings: the configuration; read from the environment (and `.env`) when omitted.
    """
    settings = settings or Settings()
    configure_logging(settings)
    configure_tracing(settings)
    cursor_codec = CursorCodec(settings.jwt_key)  # resolves (or generates) the secret up front

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database.from_settings(settings)
        redis = Redis.from_url(settings.redis_url) if settings.redis_url else None
        app.state.database = database
        app.state.redis = redis
        app.state.rate_limiter = RateLimiter.from_settings(settings)
        app.state.cursor_codec = cursor_codec
        await anyio.to_thread.run_sync(warm_up_password_hashing)
        try:
            yield
        finally:
            if redis is not None:
                await redis.aclose()
            await database.dispose()

    app = FastAPI(
        title="Parley",
        version=__version__,
        summary="A self-hostable backend for AI assistants.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        swagger_ui_parameters={"persistAuthorization": True},
    )
    app.state.settings = settings
    install_error_handlers(app)

    for router in (health_router, auth_router, users_router, admin_users_router):
        app.include_router(router)

    # Added innermost first: requests pass RequestContext -> SecurityHeaders -> CORS -> BodyLimit.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_credentials=False,
            allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "Last-Event-ID",
                "traceparent",
                "X-Request-Id",
            ],
            expose_headers=["X-Trace-Id", "X-Request-Id", "Retry-After"],
        )
    app.add_middleware(SecurityHeadersMiddleware, hsts=settings.is_production)
    app.add_middleware(RequestContextMiddleware)
    return app
