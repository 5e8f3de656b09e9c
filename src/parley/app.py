"""The application factory: `create_app(settings)` wires the lifespan (database, Redis, rate
limiter), the middleware, the error handlers and every router.

`uvicorn --factory parley.app:create_app` (what `parley serve` runs) builds it from the environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Route

from parley import __version__, engines
from parley.accounts.admin_router import admin_users_router
from parley.accounts.authentication import TouchThrottle
from parley.accounts.caller_cache import AccountChangeRelay, CallerCache, watch_account_changes
from parley.accounts.router import auth_router, users_router
from parley.background import build_worker, event_consumers
from parley.chats.router import chats_router
from parley.core.logging import configure_logging
from parley.core.memory import trim_heap_every, trim_heap_in_thread
from parley.core.middleware import (
    BodyLimitMiddleware,
    EnvelopedCORSMiddleware,
    RequestContextMiddleware,
)
from parley.core.pagination import CursorCodec
from parley.core.ratelimit import RateLimiter
from parley.core.responses import install_error_handlers
from parley.core.security import warm_up_password_hashing
from parley.core.telemetry import configure_tracing
from parley.events.audit_router import admin_audit_router, audit_router
from parley.events.dapr import dapr_router
from parley.events.outbox import watch_events
from parley.events.router import events_router
from parley.events.service import EventFeed
from parley.files.router import files_router
from parley.gateway.errors import render_openai_error
from parley.gateway.router import gateway_router
from parley.health import health_router
from parley.jobs.queue import watch_enqueues
from parley.jobs.router import admin_jobs_router
from parley.knowledge.router import knowledge_router
from parley.llm.providers import provider_modules
from parley.llm.router import admin_models_router, models_router
from parley.llm.seeding import prepare_catalog
from parley.mcp.endpoint import McpEndpoint
from parley.oauth.consent import consent_router
from parley.oauth.router import connections_router
from parley.oauth.server import OAuthServer
from parley.runtime import open_runtime
from parley.settings import Settings
from parley.tasks.router import tasks_router
from parley.tools.builtin import builtin_registry
from parley.turns.router import turns_router
from parley.usage.router import admin_usage_router, usage_router
from parley.web.api_docs import api_docs_router
from parley.web.router import web_router

logger = logging.getLogger(__name__)


async def _warm_up(settings: Settings) -> None:
    """Import the model library and the configured providers' SDKs, and hash the dummy password,
    in a worker thread after start-up: the server is live sooner, and no request waits on them."""
    # First the dummy hash that equal-time logins check unknown emails against (a login before
    # it is ready computes it itself, and takes longer than one for a known email).
    await anyio.to_thread.run_sync(warm_up_password_hashing, abandon_on_cancel=True)
    names = [*engines.TURN_MODULES, *provider_modules(settings)]
    await anyio.to_thread.run_sync(engines.warm_up, names, abandon_on_cancel=True)
    # The imports and the hash leave freed memory in the C heap: give it back (bench/findings.md).
    await trim_heap_in_thread()


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
    tracer_provider = configure_tracing(settings)
    cursor_codec = CursorCodec(settings.jwt_key)  # resolves (or generates) the secret up front
    tool_registry = builtin_registry()  # one registry: the assistant's tools and MCP's
    mcp_endpoint = McpEndpoint(settings, tool_registry)  # MCP server at /mcp

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings) as runtime:
            database, redis = runtime.database, runtime.redis
            app.state.runtime = runtime
            app.state.database = database
            app.state.event_feed = EventFeed(database)
            if settings.events_broker == "dapr":  # the consumers of the sidecar's deliveries
                app.state.event_consumers = event_consumers(runtime)
            app.state.redis = redis
            app.state.rate_limiter = RateLimiter.from_settings(settings, redis)
            app.state.cursor_codec = cursor_codec
            app.state.model_providers = runtime.providers
            app.state.catalog_cache = runtime.catalog
            app.state.tool_registry = tool_registry
            app.state.usage_meter = runtime.usage_meter
            app.state.turn_runner = runtime.turn_runner
            app.state.issuers = runtime.issuers  # external issuers' tokens (parley.accounts)
            # The background jobs of every process (parley.background), unless WORKER_IN_PROCESS
            # is false and `parley worker` runs them.
            worker = build_worker(runtime) if settings.worker_in_process else None
            app.state.worker = worker
            background: list[asyncio.Task[None]] = []
            try:
                # Seed the model catalog from the configuration (models file, *_MODELS, or the
                # providers' model lists); admins' edits are kept. Discovery failures only warn.
                await prepare_catalog(settings, database, runtime.provider_http)
                await runtime.turn_runner.run_background()
                if redis is not None:  # account changes from and to the other workers
                    background.append(
                        asyncio.create_task(AccountChangeRelay(redis).run(), name="account-changes")
                    )
                if settings.memory_trim_interval_seconds:  # this process's own heap
                    background.append(
                        asyncio.create_task(
                            trim_heap_every(settings.memory_trim_interval_seconds),
                            name="memory-trim",
                            context=contextvars.Context(),
                        )
                    )
                async with mcp_endpoint.running():  # MCP sessions live as long as the app
                    app.state.warm_up = asyncio.create_task(_warm_up(settings), name="warm-up")
                    if worker is not None:
                        worker.start()
                    try:
                        yield
                    finally:
                        app.state.warm_up.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await app.state.warm_up
                        if worker is not None:
                            await worker.stop()
            finally:
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
        # A stop by SIGTERM runs no atexit hooks: send the batched spans now.
        await anyio.to_thread.run_sync(tracer_provider.force_flush)

    app = FastAPI(
        title="Parley",
        version=__version__,
        summary="A self-hostable backend for AI assistants.",
        lifespan=lifespan,
        generate_unique_id_function=_operation_id,
        swagger_ui_parameters={"persistAuthorization": True},
        # /docs and /redoc are Parley's own (parley.web.api_docs): FastAPI's load from a CDN.
        docs_url=None,
        redoc_url=None,
        # RequestContextMiddleware makes the one server span (X-Trace-Id); FastAPI's would be a
        # second one, in a trace of its own.
        telemetry={"tracing": False},
    )
    app.state.settings = settings
    # Parley as the OAuth authorization server of /mcp (parley.oauth), over the lifespan's
    # database and rate limiter; the MCP SDK it uses loads with its first request.
    oauth = OAuthServer(settings, lambda: app.state.database, lambda: app.state.rate_limiter)
    app.state.oauth = oauth
    app.state.api_key_touches = TouchThrottle()  # this app's own, not the process's
    app.state.callers = CallerCache(settings.auth_cache_seconds)  # recent callers
    watch_account_changes()  # which any account change committed in this process empties
    watch_enqueues()  # a commit that enqueued jobs wakes this process's workers
    watch_events()  # a commit that added events wakes this process's relays
    install_error_handlers(
        app,
        renderers={"/v1": render_openai_error},  # /v1: OpenAI's errors
        redis_errors=settings.redis_url is not None,
    )

    # The OpenAI-compatible /v1 first: routes are matched in order, and its calls are the
    # busiest (its paths overlap no other router's).
    app.include_router(gateway_router)
    for router in (health_router, auth_router, users_router, admin_users_router):
        app.include_router(router)
    app.include_router(tasks_router)
    app.include_router(chats_router)
    app.include_router(turns_router)
    app.include_router(models_router)  # the model catalog, and its admin edits
    app.include_router(admin_models_router)
    app.include_router(web_router)  # the chat page at / and its static files
    app.include_router(api_docs_router)  # /docs and /redoc, with no CDN
    app.include_router(usage_router)  # usage reports, and admins' per-user totals
    app.include_router(admin_usage_router)
    app.include_router(admin_jobs_router)  # background jobs, for admins
    app.include_router(files_router)  # uploads
    app.include_router(knowledge_router)  # knowledge bases and search
    app.include_router(events_router)  # the live feed and the event schemas
    app.include_router(audit_router)  # the caller's audit log, and every user's for admins
    app.include_router(admin_audit_router)
    app.include_router(connections_router)  # the MCP clients a user allowed, over REST
    app.include_router(consent_router)  # OAuth: the sign-in and consent page
    # OAuth metadata, registration and token endpoints, as the MCP SDK's handlers serve them.
    app.router.routes.extend(oauth.routes())
    if settings.events_broker == "dapr":  # the sidecar's subscription and deliveries
        app.include_router(dapr_router)
    # MCP Streamable HTTP at exactly /mcp (a Mount would redirect /mcp to /mcp/).
    app.router.routes.append(
        Route("/mcp", endpoint=mcp_endpoint, methods=["GET", "POST", "DELETE"])
    )

    # Added innermost first: requests pass RequestContext -> CORS -> BodyLimit.
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        # An upload's file, with room for the multipart framing and the form's other fields.
        uploads={"/api/files": settings.max_upload_bytes + 64 * 1024},
    )
    if settings.cors_origins:
        app.add_middleware(
            EnvelopedCORSMiddleware,
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
    app.add_middleware(RequestContextMiddleware, hsts=settings.is_production)
    return app
