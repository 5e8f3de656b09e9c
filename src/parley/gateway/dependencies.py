"""The gateway's service for a route: `GatewayServiceDep`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from parley.core.dependencies import SessionDep, rate_limiter_of, settings_of
from parley.gateway.service import GatewayService
from parley.llm.dependencies import llm_service_of, model_providers_of
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
    )


GatewayServiceDep = Annotated[GatewayService, Depends(get_gateway_service)]
