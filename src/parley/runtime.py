"""What a Parley process runs on, HTTP or not: the database, Redis, the model providers and the
catalog cache, the embedding models, the usage meter, the turn runner and its event logs, and the
external issuers' keys.
`open_runtime` builds them and closes them in order; the app's lifespan (`parley.app`) and
`parley worker` both run on it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx2

from parley.accounts.external import ExternalIssuers
from parley.core.db import Database
from parley.knowledge.extractor import Extractor
from parley.knowledge.vectors import announce as announce_vector_backend
from parley.llm.cache import CatalogCache
from parley.llm.embedding_catalog import load_embedding_catalog
from parley.llm.embeddings import Embeddings
from parley.llm.providers import ModelProviders, create_provider_http_client
from parley.settings import Settings
from parley.turns.event_log import EventLogs, MemoryEventLogs, RedisEventLogs
from parley.turns.runner import TurnRunner
from parley.usage.meter import UsageMeter

if TYPE_CHECKING:
    from redis.asyncio import Redis


@dataclass(frozen=True, slots=True)
class Runtime:
    """A process's long-lived services (see the module's docstring)."""

    settings: Settings
    database: Database
    redis: Redis | None
    provider_http: httpx2.AsyncClient
    providers: ModelProviders
    catalog: CatalogCache
    embeddings: Embeddings
    usage_meter: UsageMeter
    event_logs: EventLogs
    turn_runner: TurnRunner
    extractor: Extractor
    issuers: ExternalIssuers


@asynccontextmanager
async def open_runtime(settings: Settings) -> AsyncIterator[Runtime]:
    """Build the services; on exit, close them: replies in progress first, then the usage
    being written, then the connections."""
    # The embedding catalog first: a configuration that names no usable embedding model stops
    # the start before anything is opened.
    embedding_catalog = load_embedding_catalog(settings)
    database = Database.from_settings(settings)
    redis = None
    if settings.redis_url:
        # Imported only when configured (an optional integration; see `parley.engines`).
        from redis.asyncio import Redis

        redis = Redis.from_url(settings.redis_url)
    # Model providers share one HTTP client (timeouts from settings), closed on shutdown.
    provider_http = create_provider_http_client(settings)
    providers = ModelProviders(settings, provider_http)
    # The knowledge base's and /v1/embeddings' models (on the relay's pool, closed with providers).
    embeddings = Embeddings(settings, embedding_catalog, providers)
    # Which vector search the knowledge base has (pgvector, sqlite-vec, or the exact scan), logged.
    await announce_vector_backend(database.engine, embedding_catalog)
    # Budgets and usage records of chat replies and /v1 calls.
    usage_meter = UsageMeter(database, settings)
    # Replies in progress: event logs in Redis when configured (any worker can resume).
    event_logs: EventLogs = (
        RedisEventLogs(redis, retention_seconds=settings.stream_retention_seconds)
        if redis is not None
        else MemoryEventLogs(retention_seconds=settings.stream_retention_seconds)
    )
    turn_runner = TurnRunner(
        database,
        event_logs,
        redis,
        save_interval=settings.stream_save_interval_ms / 1000,
        heartbeat_interval=settings.generation_heartbeat_seconds,
        stale_after=settings.generation_stale_seconds,
        usage_meter=usage_meter,
    )
    # The child processes that read uploaded files (started on the first file).
    extractor = Extractor(
        processes=settings.extraction_processes,
        timeout_seconds=settings.extraction_timeout_seconds,
        memory_bytes=settings.extraction_memory_bytes,
    )
    # The external issuers whose JWTs are accepted, and their keys (fetched on the first token).
    issuers = ExternalIssuers.from_settings(settings)
    try:
        yield Runtime(
            settings=settings,
            database=database,
            redis=redis,
            provider_http=provider_http,
            providers=providers,
            catalog=CatalogCache(settings.catalog_cache_seconds),
            embeddings=embeddings,
            usage_meter=usage_meter,
            event_logs=event_logs,
            turn_runner=turn_runner,
            extractor=extractor,
            issuers=issuers,
        )
    finally:
        await issuers.aclose()
        await turn_runner.shutdown()
        await asyncio.to_thread(extractor.close)
        await usage_meter.aclose()  # /v1 calls' settles still being written
        if isinstance(event_logs, MemoryEventLogs):
            await event_logs.aclose()
        if redis is not None:
            await redis.aclose()
        await database.dispose()
        await embeddings.aclose()
        await providers.aclose()
        await provider_http.aclose()
