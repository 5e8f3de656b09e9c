"""Callers served from memory (`AUTH_CACHE_SECONDS`) are never served past a change: one committed
in this process is seen at once (a revoked key, a deactivation, a new budget);
with Redis, one committed by another worker is seen at once too; without it, within
`AUTH_CACHE_SECONDS`. The workers here are real `parley serve` processes on one database."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from parley.accounts.caller_cache import CallerCache
from parley.accounts.models import User
from parley.core.db import build_engine
from tests.fixtures.accounts import PASSWORD, TestUser, create_api_key
from tests.fixtures.budgets import set_budget
from tests.fixtures.catalogs import OFFLINE_MODEL
from tests.fixtures.servers import ServerProcess, clean_environment, parley_serve

MODELS = "/v1/models"
REDIS_URL = "redis://127.0.0.1:6379/14"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def completion(model: str = OFFLINE_MODEL) -> dict[str, object]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


async def test_the_app_caches_callers(app: FastAPI) -> None:
    callers: CallerCache = app.state.callers
    assert callers.enabled
    assert callers.seconds == 2


async def test_a_revoked_key_is_refused_at_once(client: httpx.AsyncClient, user: TestUser) -> None:
    key = await create_api_key(client, user)
    for _ in range(2):  # the second is served from memory
        assert (await client.get(MODELS, headers=bearer(key))).status_code == 200
    [listed] = (await client.get("/api/users/me/api-keys", headers=user.headers)).json()["data"][
        "items"
    ]
    revoked = await client.delete(f"/api/users/me/api-keys/{listed['id']}", headers=user.headers)
    assert revoked.status_code == 204, revoked.text
    assert (await client.get(MODELS, headers=bearer(key))).status_code == 401


async def test_a_deactivated_user_is_refused_at_once_with_a_key_or_a_token(
    client: httpx.AsyncClient, admin: TestUser, user: TestUser
) -> None:
    key = await create_api_key(client, user)
    for headers in (bearer(key), user.headers, bearer(key), user.headers):
        assert (await client.get(MODELS, headers=headers)).status_code == 200
    changed = await client.patch(
        f"/api/admin/users/{user.id}", json={"is_active": False}, headers=admin.headers
    )
    assert changed.status_code == 200, changed.text
    for headers in (bearer(key), user.headers):
        response = await client.get(MODELS, headers=headers)
        assert response.status_code == 401, response.text


async def test_a_new_budget_applies_to_the_next_call(
    client: httpx.AsyncClient, admin: TestUser, user: TestUser
) -> None:
    key = await create_api_key(client, user)
    for _ in range(2):
        answer = await client.post("/v1/chat/completions", json=completion(), headers=bearer(key))
        assert answer.status_code == 200, answer.text
    await set_budget(client, admin, user, Decimal(0))
    refused = await client.post("/v1/chat/completions", json=completion(), headers=bearer(key))
    assert refused.status_code == 402, refused.text


async def test_a_change_made_outside_the_process_is_seen_within_the_cache_time(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI, database_url: str
) -> None:
    """A plain SQL `UPDATE` on a connection of its own (as the command line, another worker
    without Redis or a hand edit would make) reaches no cache: the caller is served until the
    entry lapses, then refused."""
    callers: CallerCache = app.state.callers
    key = await create_api_key(client, user)
    assert (await client.get(MODELS, headers=bearer(key))).status_code == 200
    users = User.__table__
    engine = build_engine(app.state.settings, database_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                users.update().where(users.c.id == uuid.UUID(user.id)).values(is_active=False)
            )
    finally:
        await engine.dispose()
    changed_at = time.monotonic()
    assert (await client.get(MODELS, headers=bearer(key))).status_code == 200  # from memory
    while (await client.get(MODELS, headers=bearer(key))).status_code == 200:
        assert time.monotonic() - changed_at < callers.seconds + 1
        await asyncio.sleep(0.1)
    assert (await client.get(MODELS, headers=bearer(key))).status_code == 401


# -- two workers ---------------------------------------------------------------------------------


@contextmanager
def _two_workers(tmp_path: Path, **settings: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    env = clean_environment(PARLEY_DATA_DIR=str(tmp_path / "data"), LOG_LEVEL="WARNING", **settings)
    with ExitStack() as stack:
        first = stack.enter_context(parley_serve(tmp_path, env))
        second = stack.enter_context(parley_serve(tmp_path, env, "--no-migrate"))
        yield first, second


def _key_used_on(first: ServerProcess, second: ServerProcess) -> tuple[str, dict[str, str], str]:
    """A new user's key, made on `first` and used on `second` (so `second` caches its caller)."""
    email = f"w-{uuid.uuid4().hex[:8]}@example.com"
    registered = httpx.post(
        f"{first.url}/api/auth/register", json={"email": email, "password": PASSWORD}, timeout=30
    )
    assert registered.status_code == 201, registered.text
    headers = bearer(registered.json()["data"]["tokens"]["access_token"])
    made = httpx.post(
        f"{first.url}/api/users/me/api-keys", json={"name": "k"}, headers=headers, timeout=10
    )
    assert made.status_code == 201, made.text
    key, key_id = made.json()["data"]["key"], made.json()["data"]["id"]
    for _ in range(2):
        assert (
            httpx.get(f"{second.url}{MODELS}", headers=bearer(key), timeout=10).status_code == 200
        )
    return key, headers, key_id


def _revoke_on(server: ServerProcess, headers: dict[str, str], key_id: str) -> None:
    revoked = httpx.delete(f"{server.url}/api/users/me/api-keys/{key_id}", headers=headers)
    assert revoked.status_code == 204, revoked.text


def _served_until(server: ServerProcess, key: str, limit: float) -> tuple[int, float]:
    """How many calls `server` still served with `key`, and for how many seconds."""
    started, served = time.monotonic(), 0
    while httpx.get(f"{server.url}{MODELS}", headers=bearer(key), timeout=10).status_code == 200:
        served += 1
        if time.monotonic() - started > limit:
            break
        time.sleep(0.05)
    return served, time.monotonic() - started


def test_with_redis_a_key_revoked_on_one_worker_is_refused_by_another_at_once(
    tmp_path: Path, db_kind: str
) -> None:
    if db_kind != "sqlite":
        pytest.skip("two workers on one SQLite file: the database does not change what is tested")
    with _two_workers(tmp_path, REDIS_URL=REDIS_URL, AUTH_CACHE_SECONDS="60") as (first, second):
        key, headers, key_id = _key_used_on(first, second)
        _revoke_on(first, headers, key_id)
        served, seconds = _served_until(second, key, limit=5)
    assert seconds < 1, (served, seconds)  # the change was published, not waited out


def test_without_redis_another_worker_refuses_within_the_cache_time(
    tmp_path: Path, db_kind: str
) -> None:
    if db_kind != "sqlite":
        pytest.skip("two workers on one SQLite file: the database does not change what is tested")
    with _two_workers(tmp_path, AUTH_CACHE_SECONDS="3") as (first, second):
        key, headers, key_id = _key_used_on(first, second)
        _revoke_on(first, headers, key_id)
        served, seconds = _served_until(second, key, limit=10)
    # Served from memory for a while (no worker told it), never past the 3 s.
    assert served >= 1
    assert seconds < 4, (served, seconds)
