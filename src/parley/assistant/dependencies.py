"""`TurnServiceDep` (turn use cases over the route's session) and `GenerationManagerDep`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from parley.assistant.flows import TurnService
from parley.assistant.manager import GenerationManager
from parley.core.dependencies import (
    CursorCodecDep,
    RateLimiterDep,
    SessionDep,
    SettingsDep,
)
from parley.llm.dependencies import LLMServiceDep
from parley.tools.registry import ToolRegistry
from parley.usage.dependencies import UsageMeterDep


async def get_generation_manager(request: Request) -> GenerationManager:
    """The running app's replies in progress."""
    manager: GenerationManager = request.app.state.generations
    return manager


async def get_tool_registry(request: Request) -> ToolRegistry:
    """The tools the assistant may call."""
    registry: ToolRegistry = request.app.state.tool_registry
    return registry


GenerationManagerDep = Annotated[GenerationManager, Depends(get_generation_manager)]


async def get_turn_service(
    session: SessionDep,
    settings: SettingsDep,
    manager: GenerationManagerDep,
    llm: LLMServiceDep,
    registry: Annotated[ToolRegistry, Depends(get_tool_registry)],
    limiter: RateLimiterDep,
    codec: CursorCodecDep,
    meter: UsageMeterDep,
) -> TurnService:
    """Turn use cases over the route's session."""
    return TurnService(
        session,
        settings=settings,
        manager=manager,
        llm=llm,
        registry=registry,
        limiter=limiter,
        codec=codec,
        meter=meter,
    )


TurnServiceDep = Annotated[TurnService, Depends(get_turn_service)]
