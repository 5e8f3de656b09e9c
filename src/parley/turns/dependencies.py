"""`TurnServiceDep`: the turn use cases over the route's session, with the app's turn runner."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from parley.core.dependencies import (
    SessionDep,
    cursor_codec_of,
    rate_limiter_of,
    settings_of,
)
from parley.llm.dependencies import embeddings_of, llm_service_of
from parley.tools.registry import ToolRegistry
from parley.turns.runner import TurnRunner
from parley.turns.service import TurnService
from parley.usage.dependencies import usage_meter_of


def turn_runner_of(request: Request) -> TurnRunner:
    """The running app's turns in progress."""
    runner: TurnRunner = request.app.state.turn_runner
    return runner


async def get_turn_service(request: Request, session: SessionDep) -> TurnService:
    """Turn use cases over the route's session."""
    registry: ToolRegistry = request.app.state.tool_registry
    return TurnService(
        session,
        settings=settings_of(request),
        runner=turn_runner_of(request),
        llm=llm_service_of(request, session),
        registry=registry,
        limiter=rate_limiter_of(request),
        codec=cursor_codec_of(request),
        meter=usage_meter_of(request),
        embeddings=embeddings_of(request),
    )


TurnServiceDep = Annotated[TurnService, Depends(get_turn_service)]
