"""The gateway's service for a route: `GatewayServiceDep`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from parley.core.dependencies import RateLimiterDep, SessionDep, SettingsDep
from parley.gateway.service import GatewayService
from parley.llm.dependencies import LLMServiceDep, ModelProvidersDep
from parley.usage.dependencies import UsageMeterDep


async def get_gateway_service(
    session: SessionDep,
    settings: SettingsDep,
    llm: LLMServiceDep,
    providers: ModelProvidersDep,
    limiter: RateLimiterDep,
    meter: UsageMeterDep,
) -> GatewayService:
    """The `/v1` use cases over the route's session."""
    return GatewayService(
        session, settings=settings, llm=llm, providers=providers, limiter=limiter, meter=meter
    )


GatewayServiceDep = Annotated[GatewayService, Depends(get_gateway_service)]
