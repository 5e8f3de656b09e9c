"""`TurnServiceDep` (turn use cases over the route's session) and `GenerationManagerDep`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from parley.assistant.flows import TurnService
from parley.assistant.manager import GenerationManager
from parley.core.dependencies import (
    SessionDep,
    cursor_codec_of,
    rate_limiter_of,
    settings_of,
)
from parley.llm.dependencies import llm_service_of
from parley.tools.registry import ToolRegistry
from parley.usage.dependencies import usage_meter_of


def generation_manager_of(request: Request) -> GenerationManager:
    """The running app's replies in progress."""
    manager: GenerationManager = request.app.state.generations
    return manager


async def get_generation_manager(request: Request) -> GenerationManager:
    """The running app's replies in progress."""
    return generation_manager_of(request)


GenerationManagerDep = Annotated[GenerationManager, Depends(get_generation_manager)]


async def get_turn_service(request: Request, session: SessionDep) -> TurnService:
    """Turn use cases over the route's session."""
    registry: ToolRegistry = request.app.state.tool_registry
    return TurnService(
        session,
        settings=settings_of(request),
        manager=generation_manager_of(request),
        llm=llm_service_of(request, session),
        registry=registry,
        limiter=rate_limiter_of(request),
        codec=cursor_codec_of(request),
        meter=usage_meter_of(request),
    )


TurnServiceDep = Annotated[TurnService, Depends(get_turn_service)]
