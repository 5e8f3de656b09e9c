"""Input that must be a clear 4xx on both databases, never a 500: NUL characters (PostgreSQL cannot
store them), times past the year 9999 in UTC, and odd credentials."""

from __future__ import annotations

import httpx

from tests.fixtures.accounts import PASSWORD, TestUser
from tests.fixtures.errors import assert_error


async def test_nul_characters_are_refused(
    client: httpx.AsyncClient, user: TestUser, admin: TestUser
) -> None:
    register = await client.post(
        "/api/auth/register",
        json={"email": "nul@example.com", "password": PASSWORD, "display_name": "a\u0000b"},
    )
    assert_error(register, 422, "validation_error")
    rename = await client.patch(
        "/api/users/me", json={"display_name": "x\u0000"}, headers=user.headers
    )
    assert_error(rename, 422, "validation_error")
    key = await client.post(
        "/api/users/me/api-keys", json={"name": "k\u0000"}, headers=user.headers
    )
    assert_error(key, 422, "validation_error")
    chats = await client.get("/api/chats", params={"q": "a\u0000"}, headers=user.headers)
    assert_error(chats, 422, "validation_error")
    users = await client.get("/api/admin/users", params={"q": "a\u0000"}, headers=admin.headers)
    assert_error(users, 422, "validation_error")
    model = await client.patch(
        "/api/admin/models/offline:pa%00rley", json={"name": "x"}, headers=admin.headers
    )
    assert_error(model, 422, "validation_error")
    token = await client.post(
        "/api/auth/token", data={"username": "a\u0000@example.com", "password": PASSWORD}
    )
    assert_error(token, 401, "invalid_credentials")


async def test_an_api_key_expiry_beyond_utc_range_is_refused(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    response = await client.post(
        "/api/users/me/api-keys",
        json={"name": "forever", "expires_at": "9999-12-31T23:59:59-05:00"},
        headers=user.headers,
    )
    assert_error(response, 422, "validation_error")


async def test_only_failed_logins_count_against_an_email(
    client: httpx.AsyncClient, user: TestUser, settings: object
) -> None:
    from parley.app import create_app
    from tests.fixtures.settings import make_settings

    limited = create_app(
        make_settings(
            settings.database_url,  # type: ignore[attr-defined]
            settings.data_dir,  # type: ignore[attr-defined]
            rate_limit_login_per_minute=3,
        )
    )
    async with limited.router.lifespan_context(limited):
        for index in range(5):  # more successes than the limit, each from its own address
            transport = httpx.ASGITransport(app=limited, client=(f"10.9.0.{index}", 1))
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                ok = await http.post(
                    "/api/auth/login", json={"email": user.email, "password": PASSWORD}
                )
                assert ok.status_code == 200, ok.text
