"""Liveness and readiness probes (no envelope, CONTRACT.md section 1).

`/health/live` answers while the process can serve; `/health/ready` checks what requests need — the
database, and Redis when it is configured — and answers 503 when any of them is down.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from parley.core.db import Database

logger = logging.getLogger(__name__)
health_router = APIRouter(prefix="/health", tags=["health"])
CHECK_TIMEOUT_SECONDS = 3.0


class Liveness(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, Literal["ok", "unavailable"]]


@health_router.get("/live", summary="Liveness")
async def live() -> Liveness:
    """The process is up."""
    return Liveness()


async def _check_database(database: Database) -> bool:
    async with database.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return True


@health_router.get(
    "/ready",
    summary="Readiness",
    responses={503: {"model": Readiness, "description": "A dependency is down."}},
)
async def ready(request: Request) -> JSONResponse:
    """The database (and Redis, when configured) answer; 503 otherwise."""
    checks: dict[str, Literal["ok", "unavailable"]] = {}
    probes = {"database": _check_database(request.app.state.database)}
    redis = request.app.state.redis
    if redis is not None:
        probes["redis"] = redis.ping()
    for name, probe in probes.items():
        try:
            await asyncio.wait_for(probe, CHECK_TIMEOUT_SECONDS)
            checks[name] = "ok"
        except Exception:  # any failure means "not ready"; the reason goes to the log
            logger.warning("readiness check failed: %s", name, exc_info=True)
            checks[name] = "unavailable"
    healthy = all(value == "ok" for value in checks.values())
    body = Readiness(status="ok" if healthy else "unavailable", checks=checks)
    return JSONResponse(body.model_dump(), status_code=200 if healthy else 503)
