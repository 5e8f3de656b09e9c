"""`/api/users/me/connections`: the MCP clients a user allowed, and revoking one (its tokens stop
working on `/mcp` at once); another user's connection is not found."""

from __future__ import annotations

import uuid

import httpx

from tests.fixtures.accounts import TestUser
from tests.fixtures.errors import assert_error
from tests.oauth.conftest import mcp_status, refresh, tokens_for


async def test_list_and_revoke(
    http: httpx.AsyncClient,
    base: str,
    client_id: str,
    user: TestUser,
    client: httpx.AsyncClient,
) -> None:
    tokens = await tokens_for(http, base, client_id, user)
    listed = await client.get("/api/users/me/connections", headers=user.headers)
    assert listed.status_code == 200, listed.text
    items = listed.json()["data"]["items"]
    assert [item["client_id"] for item in items] == [client_id]
    assert items[0]["client_name"] == "Test MCP client"
    assert items[0]["resource"] == f"{base}/mcp"
    assert items[0]["last_used_at"] is not None

    deleted = await client.delete(
        f"/api/users/me/connections/{items[0]['id']}", headers=user.headers
    )
    assert deleted.status_code == 204
    assert await mcp_status(http, base, tokens["access_token"]) == 401
    assert (await refresh(http, base, client_id, tokens["refresh_token"])).status_code == 400
    after = await client.get("/api/users/me/connections", headers=user.headers)
    assert after.json()["data"]["items"] == []
    again = await client.delete(f"/api/users/me/connections/{items[0]['id']}", headers=user.headers)
    assert_error(again, 404, "not_found")


async def test_another_users_connection_is_not_found(
    http: httpx.AsyncClient,
    base: str,
    client_id: str,
    user: TestUser,
    other_user: TestUser,
    client: httpx.AsyncClient,
) -> None:
    tokens = await tokens_for(http, base, client_id, user)
    mine = (await client.get("/api/users/me/connections", headers=user.headers)).json()
    connection_id = mine["data"]["items"][0]["id"]
    theirs = await client.get("/api/users/me/connections", headers=other_user.headers)
    assert theirs.json()["data"]["items"] == []
    refused = await client.delete(
        f"/api/users/me/connections/{connection_id}", headers=other_user.headers
    )
    assert_error(refused, 404, "not_found")
    assert await mcp_status(http, base, tokens["access_token"]) == 200


async def test_connections_need_a_user(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/users/me/connections"), 401, "not_authenticated")
    missing = await client.delete(f"/api/users/me/connections/{uuid.uuid4()}")
    assert_error(missing, 401, "not_authenticated")
