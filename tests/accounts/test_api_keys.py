"""API keys: shown once, stored as a hash, authenticate, `last_used_at`, expiry, revocation, and
ownership."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event, select, update
from sqlalchemy.engine import make_url

from parley.accounts.authentication import API_KEY_TOUCH_INTERVAL
from parley.accounts.models import ApiKey
from parley.core.db import utcnow
from tests.fixtures.accounts import PASSWORD, TestUser
from tests.fixtures.apps import running_app
from tests.fixtures.errors import assert_error
from tests.fixtures.settings import make_settings


async def _create_key(
    client: httpx.AsyncClient, user: TestUser, **body: object
) -> dict[str, object]:
    response = await client.post(
        "/api/users/me/api-keys", json={"name": "script", **body}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


async def test_create_list_use_and_revoke(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI
) -> None:
    created = await _create_key(client, user)
    secret = str(created["key"])
    assert secret.startswith("pk_")
    assert secret.startswith(str(created["prefix"]))
    assert created["last_used_at"] is None

    async with app.state.database.sessionmaker() as session:
        row = (await session.execute(select(ApiKey))).scalar_one()
        assert secret not in (row.key_hash, row.prefix)
        assert len(row.key_hash) == 64

    listed = await client.get("/api/users/me/api-keys", headers=user.headers)
    items = listed.json()["data"]["items"]
    assert [item["id"] for item in items] == [created["id"]]
    assert "key" not in items[0]
    assert secret not in listed.text

    me = await client.get("/api/users/me", headers={"Authorization": f"Bearer {secret}"})
    assert me.status_code == 200, me.text
    assert me.json()["data"]["id"] == user.id
    listed = await client.get("/api/users/me/api-keys", headers=user.headers)
    assert listed.json()["data"]["items"][0]["last_used_at"] is not None

    revoked = await client.delete(f"/api/users/me/api-keys/{created['id']}", headers=user.headers)
    assert revoked.status_code == 204
    after = await client.get("/api/users/me", headers={"Authorization": f"Bearer {secret}"})
    assert_error(after, 401, "invalid_token")
    listed = await client.get("/api/users/me/api-keys", headers=user.headers)
    assert listed.json()["data"]["items"] == []
    again = await client.delete(f"/api/users/me/api-keys/{created['id']}", headers=user.headers)
    assert_error(again, 404, "not_found")


async def test_a_key_with_the_right_prefix_but_wrong_secret_fails(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    created = await _create_key(client, user)
    forged = str(created["prefix"]) + "A" * 40
    response = await client.get("/api/users/me", headers={"Authorization": f"Bearer {forged}"})
    assert_error(response, 401, "invalid_token")


async def test_expired_key_stops_working(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI
) -> None:
    expires = (utcnow() + timedelta(days=1)).isoformat()
    created = await _create_key(client, user, expires_at=expires)
    assert created["expires_at"] is not None
    secret = str(created["key"])
    ok = await client.get("/api/users/me", headers={"Authorization": f"Bearer {secret}"})
    assert ok.status_code == 200
    async with app.state.database.sessionmaker() as session:
        await session.execute(
            update(ApiKey)
            .where(ApiKey.id == uuid.UUID(str(created["id"])))
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    response = await client.get("/api/users/me", headers={"Authorization": f"Bearer {secret}"})
    body = assert_error(response, 401, "invalid_token")
    assert "expired" in str(body["error"])


async def test_create_validation(client: httpx.AsyncClient, user: TestUser) -> None:
    past = (utcnow() - timedelta(minutes=1)).isoformat()
    response = await client.post(
        "/api/users/me/api-keys", json={"name": "old", "expires_at": past}, headers=user.headers
    )
    assert_error(response, 422, "validation_error")
    naive = await client.post(
        "/api/users/me/api-keys",
        json={"name": "naive", "expires_at": "2030-01-01T00:00:00"},
        headers=user.headers,
    )
    assert_error(naive, 422, "validation_error")
    nameless = await client.post("/api/users/me/api-keys", json={}, headers=user.headers)
    assert_error(nameless, 422, "validation_error")
    anonymous = await client.post("/api/users/me/api-keys", json={"name": "x"})
    assert_error(anonymous, 401, "not_authenticated")


async def test_another_users_key_is_not_found(
    client: httpx.AsyncClient, user: TestUser, other_user: TestUser
) -> None:
    created = await _create_key(client, user)
    response = await client.delete(
        f"/api/users/me/api-keys/{created['id']}", headers=other_user.headers
    )
    assert_error(response, 404, "not_found")
    listed = await client.get("/api/users/me/api-keys", headers=other_user.headers)
    assert listed.json()["data"]["items"] == []
    still = await client.get("/api/users/me", headers={"Authorization": f"Bearer {created['key']}"})
    assert still.status_code == 200
    bad_id = await client.delete("/api/users/me/api-keys/not-a-uuid", headers=user.headers)
    assert_error(bad_id, 422, "validation_error")


async def test_list_pages_with_a_cursor(
    client: httpx.AsyncClient, user: TestUser, auth_client: Callable[[TestUser], httpx.AsyncClient]
) -> None:
    created = [str((await _create_key(client, user, name=f"k{i}"))["id"]) for i in range(5)]
    seen: list[str] = []
    cursor = None
    async with auth_client(user) as http:
        while True:
            params: dict[str, str | int] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = (await http.get("/api/users/me/api-keys", params=params)).json()["data"]
            seen.extend(item["id"] for item in page["items"])
            cursor = page["next_cursor"]
            if cursor is None:
                break
    assert seen == list(reversed(created))


@pytest.mark.parametrize(
    # Both surfaces, through the one authentication.
    "path",
    ["/api/users/me", "/v1/models/offline:parley"],
)
async def test_a_busy_key_is_touched_once_per_interval_not_once_per_request(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI, path: str
) -> None:
    """Twenty calls in flight when `last_used_at` goes stale write it once between them: a write
    each would queue them all for the database (SQLite's one writer) while holding pooled
    connections."""
    created = await _create_key(client, user)
    secret = str(created["key"])
    stale = utcnow() - API_KEY_TOUCH_INTERVAL * 2
    async with app.state.database.sessionmaker() as session:
        await session.execute(update(ApiKey).values(last_used_at=stale))
        await session.commit()
    touches: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.lstrip().upper().startswith("UPDATE API_KEYS"):
            touches.append(statement)

    engine = app.state.database.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        headers = {"Authorization": f"Bearer {secret}"}
        calls = await asyncio.gather(*(client.get(path, headers=headers) for _ in range(20)))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert [call.status_code for call in calls] == [200] * 20
    assert len(touches) == 1
    async with app.state.database.sessionmaker() as session:
        touched = (await session.execute(select(ApiKey.last_used_at))).scalar_one()
    assert touched is not None
    assert touched > stale


@pytest.mark.parametrize("path", ["/api/users/me", "/v1/models"])
async def test_a_touch_that_cannot_get_the_write_lock_is_a_503_not_a_500(
    db_kind: str, database_url: str, tmp_path: Path, path: str
) -> None:
    """A key's `last_used_at` write that cannot get SQLite's write lock (another process holds
    it): a retryable 503 on both surfaces, never a 500, and the next call goes through."""
    if db_kind != "sqlite":
        pytest.skip("SQLite's single write lock")
    database = make_url(database_url).database
    assert database is not None
    settings = make_settings(database_url, tmp_path, sqlite_busy_timeout_ms=200)
    async with running_app(settings) as (application, http):
        registered = await http.post(
            "/api/auth/register", json={"email": "toucher@example.com", "password": PASSWORD}
        )
        assert registered.status_code == 201, registered.text
        access = registered.json()["data"]["tokens"]["access_token"]
        created = await http.post(
            "/api/users/me/api-keys",
            json={"name": "busy"},
            headers={"Authorization": f"Bearer {access}"},
        )
        assert created.status_code == 201, created.text
        headers = {"Authorization": f"Bearer {created.json()['data']['key']}"}
        # The key's last use is stale, so this call writes it.
        async with application.state.database.sessionmaker() as session:
            await session.execute(
                update(ApiKey).values(last_used_at=utcnow() - API_KEY_TOUCH_INTERVAL * 2)
            )
            await session.commit()
        holder = sqlite3.connect(database, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # another process holding the write lock
            busy = await http.get(path, headers=headers)
        finally:
            holder.rollback()
            holder.close()
        assert busy.status_code == 503, busy.text
        assert busy.headers["Retry-After"] == "1"
        assert (await http.get(path, headers=headers)).status_code == 200
