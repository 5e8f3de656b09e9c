"""The gateway's services for a route: `GatewayServiceDep`, and `EmbeddingServiceDep` (which
needs no database session)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from parley.core.dependencies import SessionDep, rate_limiter_of, settings_of
from parley.gateway.embedding_service import EmbeddingService
from parley.gateway.service import GatewayService
from parley.llm.dependencies import embeddings_of, llm_service_of, model_providers_of
from parley.usage.dependencies import usage_meter_of


async def get_gateway_service(request: Request, session: SessionDep) -> GatewayService:
    """The `/v1` use cases over the route's session."""
    return GatewayService(
        session,
        settings=settings_of(request),
        llm=llm_service_of(request, session),
        providers=model_providers_of(request),
        limiter=rate_limiter_of(request),
        meter=usage_meter_of(request),
        embeddings=embeddings_of(request),
    )


async def get_embedding_service(request: Request) -> EmbeddingService:
    """The `/v1/embeddings` use case (it reads nothing from the database)."""
    return EmbeddingService(
        settings=settings_of(request),
        embeddings=embeddings_of(request),
        limiter=rate_limiter_of(request),
        meter=usage_meter_of(request),
    )


GatewayServiceDep = Annotated[GatewayService, Depends(get_gateway_service)]
EmbeddingServiceDep = Annotated[EmbeddingService, Depends(get_embedding_service)]
