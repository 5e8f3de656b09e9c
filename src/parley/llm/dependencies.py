"""The catalog's services for a route: `CatalogServiceDep` (listing, admin changes) and
`LLMServiceDep` (entries to models, for the chat engine and the gateway); and the process's
embedding models (`embeddings_of`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from parley.core.dependencies import SessionDep, cursor_codec_of
from parley.llm.cache import CatalogCache
from parley.llm.embeddings import Embeddings
from parley.llm.providers import ModelProviders
from parley.llm.service import CatalogService, LLMService


def model_providers_of(request: Request) -> ModelProviders:
    """The running app's model providers (they share its HTTP client)."""
    providers: ModelProviders = request.app.state.model_providers
    return providers


def embeddings_of(request: Request) -> Embeddings:
    """The running app's embedding models (its runtime's)."""
    embeddings: Embeddings = request.app.state.runtime.embeddings
    return embeddings


def llm_service_of(request: Request, session: AsyncSession) -> LLMService:
    """Entries and models over `session` and the worker's catalog cache."""
    cache: CatalogCache = request.app.state.catalog_cache
    return LLMService(session, model_providers_of(request), cache)


async def get_catalog_service(request: Request, session: SessionDep) -> CatalogService:
    """Catalog use cases over the route's session."""
    return CatalogService(session, cursor_codec_of(request))


async def get_llm_service(request: Request, session: SessionDep) -> LLMService:
    """Entries and models over the route's session and the worker's catalog cache."""
    return llm_service_of(request, session)


CatalogServiceDep = Annotated[CatalogService, Depends(get_catalog_service)]
LLMServiceDep = Annotated[LLMService, Depends(get_llm_service)]
