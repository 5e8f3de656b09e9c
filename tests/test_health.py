"""Liveness and readiness (CONTRACT.md section 1): plain JSON, no envelope; readiness checks the
database and, when configured, Redis, and answers 503 when one of them is down."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.fixtures.apps import running_app
from tests.fixtures.settings import make_settings

REDIS_TEST_URL = "redis://127.0.0.1:6379/15"
CLOSED_REDIS_URL = "redis://127.0.0.1:1/0"


async def test_live_is_ok_without_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-trace-id"])


async def test_ready_checks_the_database(client: httpx.AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok"}}


async def test_health_routes_refuse_other_methods(client: httpx.AsyncClient) -> None:
    response = await client.post("/health/live")
    assert response.status_code == 405


async def test_ready_checks_redis_when_configured(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, redis_url=REDIS_TEST_URL)
    async with running_app(settings) as (_, http):
        response = await http.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


async def test_unreachable_redis_makes_ready_503_but_live_ok(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url, tmp_path, redis_url=CLOSED_REDIS_URL)
    async with running_app(settings) as (_, http):
        ready = await http.get("/health/ready")
        live = await http.get("/health/live")
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "unavailable",
        "checks": {"database": "ok", "redis": "unavailable"},
    }
    assert "trace_id" not in ready.json()
    assert re.fullmatch(r"[0-9a-f]{32}", ready.headers["x-trace-id"])
    assert live.status_code == 200
    assert live.json() == {"status": "ok"}


async def test_health_is_in_the_openapi_schema(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "get" in paths["/health/live"]
    assert "503" in paths["/health/ready"]["get"]["responses"]
