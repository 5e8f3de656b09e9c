"""Who calls `/v1`: the one authentication (`authenticate`, plain rows on a connection of its
own) gives the same answers as on `/api` — keys and access tokens accepted; revoked, expired,
forged and overlong credentials, and deactivated users, refused with OpenAI's 401; and the
caller's own budget enforced — and its connection leaves nothing checked out, no transaction open
and no SQLite write lock held, even when cancelled mid-write. (The key's `last_used_at`, written
at most once an interval, is in `tests/accounts/test_api_keys.py` for both surfaces.)"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from datetime import timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text, update
from sqlalchemy.engine import make_url
from tests.fixtures.accounts import TestUser, create_api_key
from tests.fixtures.catalogs import OFFLINE_MODEL

from parley.accounts.authentication import (
    API_KEY_TOUCH_INTERVAL,
    MAX_TOKEN_CHARS,
    authenticate,
)
from parley.accounts.models import ApiKey
from parley.core.db import utcnow

MODELS = "/v1/models"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_refused(response: httpx.Response) -> None:
    """OpenAI's 401, as `/v1` answers bad credentials (with one message for every cause)."""
    assert response.status_code == 401, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == "invalid_api_key"
    assert response.headers["www-authenticate"] == "Bearer"


async def test_a_key_and_an_access_token_both_authenticate(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    key = await create_api_key(client, user)
    for headers in (bearer(key), user.headers):
        response = await client.get(f"{MODELS}/{OFFLINE_MODEL}", headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["id"] == OFFLINE_MODEL


@pytest.mark.parametrize(
    "token",
    ["pk_not-a-real-key", "not-a-jwt", "x" * (MAX_TOKEN_CHARS + 1), "pk_" + "A" * 60],
)
async def test_bad_credentials_are_refused(client: httpx.AsyncClient, token: str) -> None:
    assert_refused(await client.get(MODELS, headers=bearer(token)))


async def test_the_right_prefix_with_another_secret_is_refused(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    key = await create_api_key(client, user)
    forged = key[: len(key) // 2] + "A" * (len(key) - len(key) // 2)
    assert forged != key
    assert_refused(await client.get(MODELS, headers=bearer(forged)))


async def test_an_expired_key_is_refused(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI
) -> None:
    key = await create_api_key(client, user)
    assert (await client.get(MODELS, headers=bearer(key))).status_code == 200
    async with app.state.database.sessionmaker() as session:
        await session.execute(update(ApiKey).values(expires_at=utcnow() - timedelta(seconds=1)))
        await session.commit()
    assert_refused(await client.get(MODELS, headers=bearer(key)))


async def test_a_revoked_key_is_refused(client: httpx.AsyncClient, user: TestUser) -> None:
    key = await create_api_key(client, user)
    assert (await client.get(MODELS, headers=bearer(key))).status_code == 200
    listed = await client.get("/api/users/me/api-keys", headers=user.headers)
    [item] = listed.json()["data"]["items"]
    revoked = await client.delete(f"/api/users/me/api-keys/{item['id']}", headers=user.headers)
    assert revoked.status_code == 204
    assert_refused(await client.get(MODELS, headers=bearer(key)))


async def test_a_deactivated_user_is_refused_at_once_whatever_they_hold(
    client: httpx.AsyncClient, user: TestUser, admin: TestUser
) -> None:
    key = await create_api_key(client, user)
    assert (await client.get(MODELS, headers=bearer(key))).status_code == 200
    assert (await client.get(MODELS, headers=user.headers)).status_code == 200
    deactivated = await client.patch(
        f"/api/admin/users/{user.id}", json={"is_active": False}, headers=admin.headers
    )
    assert deactivated.status_code == 200, deactivated.text
    assert_refused(await client.get(MODELS, headers=bearer(key)))
    assert_refused(await client.get(MODELS, headers=user.headers))
    chat = await client.post(
        "/v1/chat/completions",
        json={"model": OFFLINE_MODEL, "messages": [{"role": "user", "content": "hi"}]},
        headers=bearer(key),
    )
    assert_refused(chat)


async def test_the_callers_own_budget_is_enforced(
    client: httpx.AsyncClient, user: TestUser, admin: TestUser
) -> None:
    """The budget comes from the caller's row as `/v1` read it: a spent budget refuses the
    call with a 402 (`budget_exceeded`), with a key and with a token alike."""
    key = await create_api_key(client, user)
    budget = await client.patch(
        f"/api/admin/users/{user.id}", json={"monthly_budget_usd": 0}, headers=admin.headers
    )
    assert budget.status_code == 200, budget.text
    body = {"model": OFFLINE_MODEL, "messages": [{"role": "user", "content": "hi"}]}
    for headers in (bearer(key), user.headers):
        response = await client.post("/v1/chat/completions", json=body, headers=headers)
        assert response.status_code == 402, response.text
        assert response.json()["error"]["code"] == "budget_exceeded"


# -- connections: nothing left held ------------------------------------------------------


async def _make_stale(app: FastAPI) -> None:
    async with app.state.database.sessionmaker() as session:
        await session.execute(
            update(ApiKey).values(last_used_at=utcnow() - API_KEY_TOUCH_INTERVAL * 2)
        )
        await session.commit()
    app.state.api_key_touches.clear()


async def _assert_nothing_held(app: FastAPI, db_kind: str, database_url: str) -> None:
    engine = app.state.database.engine
    assert engine.pool.checkedout() == 0
    if db_kind == "sqlite":
        other = sqlite3.connect(make_url(database_url).database, isolation_level=None, timeout=0)
        try:
            other.execute("BEGIN IMMEDIATE")  # fails at once if a pooled connection holds the lock
            other.rollback()
        finally:
            other.close()
    else:
        async with engine.connect() as connection:
            idle = await connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state LIKE 'idle in transaction%'"
                )
            )
            assert idle.scalar() == 0


async def test_v1_calls_leave_no_connection_transaction_or_lock(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI, db_kind: str, database_url: str
) -> None:
    key = await create_api_key(client, user)
    for _ in range(3):
        await _make_stale(app)
        for token in (key, user.access_token, "pk_not-a-real-key"):
            headers = {"Authorization": f"Bearer {token}"}
            assert (await client.get("/v1/models", headers=headers)).status_code in (200, 401)
    await _assert_nothing_held(app, db_kind, database_url)


async def test_a_caller_cancelled_mid_touch_leaves_nothing_behind(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI, db_kind: str, database_url: str
) -> None:
    key = await create_api_key(client, user)
    await _make_stale(app)
    engine = app.state.database.engine
    holder = await engine.connect()
    if db_kind == "sqlite":  # the touch queues for the write lock
        await holder.execute(text("UPDATE users SET display_name = display_name WHERE 0"))
    else:  # the touch waits on the key's row lock
        await holder.execute(text("SELECT 1 FROM api_keys FOR UPDATE"))
    touches = app.state.api_key_touches
    caller = asyncio.create_task(authenticate(engine, app.state.settings.jwt_key, touches, key))
    await asyncio.sleep(0.3)
    caller.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await caller
    await holder.rollback()
    await holder.close()
    assert not touches  # not written, so the next call may write it
    await _assert_nothing_held(app, db_kind, database_url)
    ok = await client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert ok.status_code == 200, ok.text
