"""`POST /oauth/token`: the code exchange (PKCE, single use, bound to its client and redirect
URI), rotating refresh tokens, RFC 6749 section 5.2 errors, and access tokens bound to `/mcp`
and refused by the REST API."""

from __future__ import annotations

import httpx

from tests.fixtures.accounts import TestUser
from tests.oauth.conftest import (
    authorization_code,
    exchange,
    mcp_status,
    new_authorization,
    refresh,
    register,
    tokens_for,
)


def assert_token_error(response: httpx.Response, error: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert response.headers["cache-control"] == "no-store"


async def test_a_code_is_exchanged_for_tokens_that_open_mcp(
    http: httpx.AsyncClient, base: str, client_id: str, user: TestUser
) -> None:
    authorization = new_authorization(client_id)
    code = await authorization_code(http, base, authorization, user)
    response = await exchange(http, base, authorization, code)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] > 0
    assert body["refresh_token"].startswith("prt_")
    assert await mcp_status(http, base, body["access_token"]) == 200


async def test_a_wrong_code_verifier_is_invalid_grant(
    http: httpx.AsyncClient, base: str, client_id: str, user: TestUser
) -> None:
    authorization = new_authorization(client_id)
    code = await authorization_code(http, base, authorization, user)
    wrong = await exchange(http, base, authorization, code, code_verifier="x" * 50)
    assert_token_error(wrong, "invalid_grant")


async def test_a_reused_code_fails_and_revokes_what_it_gave(
    http: httpx.AsyncClient, base: str, client_id: str, user: TestUser
) -> None:
    authorization = new_authorization(client_id)
    code = await authorization_code(http, base, authorization, user)
    first = await exchange(http, base, authorization, code)
    assert first.status_code == 200
    tokens = first.json()
    assert await mcp_status(http, base, tokens["access_token"]) == 200
    again = await exchange(http, base, authorization, code)
    assert_token_error(again, "invalid_grant")
    assert await mcp_status(http, base, tokens["access_token"]) == 401
    assert_token_error(
        await refresh(http, base, client_id, tokens["refresh_token"]), "invalid_grant"
    )


async def test_a_code_is_bound_to_its_client_and_redirect_uri(
    http: httpx.AsyncClient, base: str, client_id: str, user: TestUser
) -> None:
    authorization = new_authorization(client_id)
    code = await authorization_code(http, base, authorization, user)
    other = (await register(http, base)).json()["client_id"]
    assert_token_error(
        await exchange(http, base, authorization, code, client_id=other), "invalid_grant"
    )
    moved = await exchange(
        http, base, authorization, code, redirect_uri="http://127.0.0.1:8765/callbacks"
    )
    assert_token_error(moved, "invalid_request")
    assert (await exchange(http, base, authorization, code)).status_code == 200


async def test_refresh_tokens_rotate_and_a_reuse_revokes_the_grant(
    http: httpx.AsyncClient, base: str, client_id: str, user: TestUser
) -> None:
    first = await tokens_for(http, base, client_id, user)
    rotated = await refresh(http, base, client_id, first["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert await mcp_status(http, base, second["access_token"]) == 200
    reused = await refresh(http, base, client_id, first["refresh_token"])
    assert_token_error(reused, "invalid_grant")
    # The whole grant is gone: the newest tokens too.
    assert await mcp_status(http, base, second["access_token"]) == 401
    assert_token_error(
        await refresh(http, base, client_id, second["refresh_token"]), "invalid_grant"
    )


async def test_an_mcp_token_is_refused_by_the_rest_api_and_v1(
    http: httpx.AsyncClient, base: str, client_id: str, user: TestUser
) -> None:
    tokens = await tokens_for(http, base, client_id, user)
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    me = await http.get(f"{base}/api/users/me", headers=headers)
    assert me.status_code == 401
    assert me.json()["error"]["code"] == "invalid_token"
    models = await http.get(f"{base}/v1/models", headers=headers)
    assert models.status_code == 401


async def test_an_mcp_token_is_bound_to_the_origin_it_was_issued_for(
    http: httpx.AsyncClient, base: str, client_id: str, user: TestUser
) -> None:
    tokens = await tokens_for(http, base, client_id, user)
    port = base.rsplit(":", 1)[1]
    elsewhere = f"http://localhost:{port}"  # the same server under another name
    assert await mcp_status(http, elsewhere, tokens["access_token"]) == 401


async def test_grant_and_client_errors(http: httpx.AsyncClient, base: str, client_id: str) -> None:
    token_url = f"{base}/oauth/token"
    password = await http.post(
        token_url, data={"grant_type": "password", "username": "a", "client_id": client_id}
    )
    assert_token_error(password, "unsupported_grant_type")
    missing = await http.post(token_url, data={"client_id": client_id})
    assert_token_error(missing, "invalid_request")
    unknown = await http.post(
        token_url,
        data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": "nobody"},
    )
    assert_token_error(unknown, "invalid_client", 401)
    bad_code = await http.post(
        token_url,
        data={
            "grant_type": "authorization_code",
            "code": "pac_nothing",
            "redirect_uri": "http://127.0.0.1:8765/callback",
            "client_id": client_id,
            "code_verifier": "v" * 43,
        },
    )
    assert_token_error(bad_code, "invalid_grant")
    as_json = await http.post(token_url, json={"grant_type": "refresh_token"})
    assert_token_error(as_json, "invalid_request")


async def test_a_confidential_client_must_send_its_secret(
    http: httpx.AsyncClient, base: str, user: TestUser
) -> None:
    registered = (
        await register(http, base, token_endpoint_auth_method="client_secret_post")
    ).json()
    authorization = new_authorization(registered["client_id"])
    code = await authorization_code(http, base, authorization, user)
    without = await exchange(http, base, authorization, code)
    assert_token_error(without, "invalid_client", 401)
    wrong = await exchange(http, base, authorization, code, client_secret="pcs_wrong")
    assert_token_error(wrong, "invalid_client", 401)
    right = await exchange(
        http, base, authorization, code, client_secret=registered["client_secret"]
    )
    assert right.status_code == 200, right.text


async def test_a_deactivated_user_is_refused_at_once(
    http: httpx.AsyncClient,
    base: str,
    client_id: str,
    user: TestUser,
    admin: TestUser,
    client: httpx.AsyncClient,
) -> None:
    tokens = await tokens_for(http, base, client_id, user)
    deactivated = await client.patch(
        f"/api/admin/users/{user.id}", json={"is_active": False}, headers=admin.headers
    )
    assert deactivated.status_code == 200, deactivated.text
    assert await mcp_status(http, base, tokens["access_token"]) == 401
    assert_token_error(
        await refresh(http, base, client_id, tokens["refresh_token"]), "invalid_grant"
    )
