"""Sign-up, sign-in, the password grant, guests and their upgrade, refresh rotation and logout,
over HTTP."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest

from tests.fixtures.accounts import PASSWORD, TestUser, UserFactory
from tests.fixtures.errors import assert_error

HEX32 = re.compile(r"^[0-9a-f]{32}$")


async def test_register_returns_user_and_tokens(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/auth/register",
        json={"email": "Ada@Example.COM", "password": PASSWORD, "display_name": "  Ada  "},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert HEX32.match(body["trace_id"])
    assert body["trace_id"] == response.headers["x-trace-id"]
    user = body["data"]["user"]
    assert user["email"] == "ada@example.com"
    assert user["display_name"] == "Ada"
    assert user["is_guest"] is False
    assert user["is_admin"] is False
    assert user["is_active"] is True
    assert uuid.UUID(user["id"]).version == 7
    assert user["created_at"].endswith("Z") or user["created_at"].endswith("+00:00")
    tokens = body["data"]["tokens"]
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900
    assert tokens["access_token"] != tokens["refresh_token"]
    assert "password" not in response.text


async def test_register_duplicate_email_is_case_insensitive(client: httpx.AsyncClient) -> None:
    await client.post("/api/auth/register", json={"email": "bob@example.com", "password": PASSWORD})
    response = await client.post(
        "/api/auth/register", json={"email": "BOB@example.com", "password": PASSWORD}
    )
    assert_error(response, 409, "conflict")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "a@example.com", "password": "short"}, "body.password"),
        ({"email": "a@example.com", "password": "x" * 129}, "body.password"),
        ({"email": "not-an-email", "password": PASSWORD}, "body.email"),
        ({"password": PASSWORD}, "body.email"),
        ({"email": "a@example.com", "password": PASSWORD, "is_admin": True}, "body.is_admin"),
        ({"email": "a@example.com", "password": PASSWORD, "display_name": ""}, "body.display_name"),
    ],
)
async def test_register_rejects_bad_input(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    response = await client.post("/api/auth/register", json=body)
    error = assert_error(response, 422, "validation_error")["error"]
    assert field in [detail["field"] for detail in error["details"]]  # type: ignore[index]


async def test_login_and_me(client: httpx.AsyncClient, user: TestUser) -> None:
    response = await client.post(
        "/api/auth/login", json={"email": user.email.upper(), "password": PASSWORD}
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["user"]["id"] == user.id
    me = await client.get(
        "/api/users/me", headers={"Authorization": f"Bearer {data['tokens']['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["data"]["email"] == user.email


async def test_wrong_password_and_unknown_email_answer_alike(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    wrong = await client.post(
        "/api/auth/login", json={"email": user.email, "password": "not the password"}
    )
    unknown = await client.post(
        "/api/auth/login", json={"email": "nobody@example.com", "password": "not the password"}
    )
    wrong_error = assert_error(wrong, 401, "invalid_credentials")["error"]
    unknown_error = assert_error(unknown, 401, "invalid_credentials")["error"]
    assert wrong_error == unknown_error


async def test_unknown_email_still_pays_for_a_hash(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    """Equal-time login: an unknown email is verified against a dummy argon2 hash, so it costs
    the same order of time as a wrong password (a skipped hash would be ~100x faster)."""

    async def median_seconds(email: str) -> float:
        samples = []
        for _ in range(5):
            started = time.perf_counter()
            await client.post("/api/auth/login", json={"email": email, "password": "wrong-pass"})
            samples.append(time.perf_counter() - started)
        return sorted(samples)[2]

    known = await median_seconds(user.email or "")
    unknown = await median_seconds("nobody@example.com")
    assert unknown > known * 0.3, (known, unknown)


async def test_password_grant_for_swagger(client: httpx.AsyncClient, user: TestUser) -> None:
    response = await client.post(
        "/api/auth/token",
        data={"username": user.email, "password": PASSWORD, "grant_type": "password"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token"}
    assert body["token_type"] == "bearer"
    me = await client.get(
        "/api/users/me", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    assert me.status_code == 200
    bad = await client.post("/api/auth/token", data={"username": user.email, "password": "nope"})
    assert_error(bad, 401, "invalid_credentials")
    missing = await client.post("/api/auth/token", data={"username": user.email})
    assert_error(missing, 422, "validation_error")


async def test_the_password_grant_says_username_is_the_email(client: httpx.AsyncClient) -> None:
    """Swagger's Authorize dialog asks for a "username": the schema must say it is the email,
    while the field keeps the name RFC 6749 gives it."""
    schema = (await client.get("/openapi.json")).json()
    [scheme] = schema["components"]["securitySchemes"].values()
    assert scheme["flows"]["password"]["tokenUrl"] == "/api/auth/token"
    assert "email" in scheme["description"].lower()
    assert "username" in scheme["description"]
    body = schema["paths"]["/api/auth/token"]["post"]["requestBody"]
    ref = body["content"]["application/x-www-form-urlencoded"]["schema"]["$ref"]
    form = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert form["required"] == ["username", "password"]
    assert "email" in form["properties"]["username"]["description"].lower()
    assert form["properties"]["password"]["format"] == "password"


async def test_register_login_refresh_reuse_logout_flow(client: httpx.AsyncClient) -> None:
    registered = await client.post(
        "/api/auth/register", json={"email": "flow@example.com", "password": PASSWORD}
    )
    assert registered.status_code == 201
    login = await client.post(
        "/api/auth/login", json={"email": "flow@example.com", "password": PASSWORD}
    )
    tokens = login.json()["data"]["tokens"]
    me = await client.get(
        "/api/users/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert me.status_code == 200

    refreshed = await client.post(
        "/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 200, refreshed.text
    rotated = refreshed.json()["data"]["tokens"]
    assert rotated["refresh_token"] != tokens["refresh_token"]
    me = await client.get(
        "/api/users/me", headers={"Authorization": f"Bearer {rotated['access_token']}"}
    )
    assert me.status_code == 200

    replay = await client.post("/api/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert_error(replay, 401, "invalid_token")
    # Reuse revoked the whole family: the rotated token is dead too.
    after = await client.post("/api/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert_error(after, 401, "invalid_token")

    # A separate sign-in is a separate family, untouched by that revocation.
    second = await client.post(
        "/api/auth/login", json={"email": "flow@example.com", "password": PASSWORD}
    )
    second_refresh = second.json()["data"]["tokens"]["refresh_token"]
    out = await client.post("/api/auth/logout", json={"refresh_token": second_refresh})
    assert out.status_code == 204
    assert out.content == b""
    dead = await client.post("/api/auth/refresh", json={"refresh_token": second_refresh})
    assert_error(dead, 401, "invalid_token")


async def test_refresh_rejects_access_tokens_and_garbage(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    as_refresh = await client.post("/api/auth/refresh", json={"refresh_token": user.access_token})
    assert_error(as_refresh, 401, "invalid_token")
    garbage = await client.post("/api/auth/refresh", json={"refresh_token": "garbage"})
    assert_error(garbage, 401, "invalid_token")
    empty = await client.post("/api/auth/refresh", json={"refresh_token": ""})
    assert_error(empty, 422, "validation_error")
    logout = await client.post("/api/auth/logout", json={"refresh_token": "garbage"})
    assert_error(logout, 401, "invalid_token")


async def test_concurrent_refreshes_leave_the_family_consistent(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    import asyncio

    answers = await asyncio.gather(
        *(
            client.post("/api/auth/refresh", json={"refresh_token": user.refresh_token})
            for _ in range(2)
        )
    )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200, 401], [answer.text for answer in answers]
    winner = next(answer for answer in answers if answer.status_code == 200)
    new_refresh = winner.json()["data"]["tokens"]["refresh_token"]
    # The loser presented a spent token: reuse detection revoked the family, winner's token too.
    again = await client.post("/api/auth/refresh", json={"refresh_token": new_refresh})
    assert_error(again, 401, "invalid_token")


async def test_guest_upgrade_keeps_the_same_user(client: httpx.AsyncClient) -> None:
    guest = await client.post("/api/auth/guest")
    assert guest.status_code == 201, guest.text
    data = guest.json()["data"]
    assert data["user"]["is_guest"] is True
    assert data["user"]["email"] is None
    headers = {"Authorization": f"Bearer {data['tokens']['access_token']}"}
    key = await client.post("/api/users/me/api-keys", json={"name": "guest key"}, headers=headers)
    assert key.status_code == 201

    upgraded = await client.post(
        "/api/auth/upgrade",
        json={"email": "Guest.Now@example.com", "password": PASSWORD},
        headers=headers,
    )
    assert upgraded.status_code == 200, upgraded.text
    user = upgraded.json()["data"]["user"]
    assert user["id"] == data["user"]["id"]
    assert user["is_guest"] is False
    assert user["email"] == "guest.now@example.com"
    # Data kept: the key made as a guest is still there and still works.
    keys = await client.get("/api/users/me/api-keys", headers=headers)
    assert [item["name"] for item in keys.json()["data"]["items"]] == ["guest key"]
    login = await client.post(
        "/api/auth/login", json={"email": "guest.now@example.com", "password": PASSWORD}
    )
    assert login.json()["data"]["user"]["id"] == data["user"]["id"]

    again = await client.post(
        "/api/auth/upgrade",
        json={"email": "other@example.com", "password": PASSWORD},
        headers=headers,
    )
    assert_error(again, 409, "conflict")


async def test_upgrade_needs_a_guest_a_free_email_and_credentials(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    no_auth = await client.post(
        "/api/auth/upgrade", json={"email": "x@example.com", "password": PASSWORD}
    )
    assert_error(no_auth, 401, "not_authenticated")
    guest = (await client.post("/api/auth/guest")).json()["data"]
    taken = await client.post(
        "/api/auth/upgrade",
        json={"email": user.email, "password": PASSWORD},
        headers={"Authorization": f"Bearer {guest['tokens']['access_token']}"},
    )
    assert_error(taken, 409, "conflict")
    short = await client.post(
        "/api/auth/upgrade",
        json={"email": "fresh@example.com", "password": "short"},
        headers={"Authorization": f"Bearer {guest['tokens']['access_token']}"},
    )
    assert_error(short, 422, "validation_error")


async def test_upgrade_ends_the_guests_earlier_sign_ins(client: httpx.AsyncClient) -> None:
    """Like a password change: whoever held the guest's refresh tokens (another device, a copy)
    must not keep the now password-protected account; the upgrade's own tokens work."""
    guest = (await client.post("/api/auth/guest")).json()["data"]
    # A second sign-in of the same guest (a rotated family), and the first one's next token.
    rotated = await client.post(
        "/api/auth/refresh", json={"refresh_token": guest["tokens"]["refresh_token"]}
    )
    assert rotated.status_code == 200, rotated.text
    earlier = rotated.json()["data"]["tokens"]
    upgraded = await client.post(
        "/api/auth/upgrade",
        json={"email": "kept-safe@example.com", "password": PASSWORD},
        headers={"Authorization": f"Bearer {earlier['access_token']}"},
    )
    assert upgraded.status_code == 200, upgraded.text
    fresh = upgraded.json()["data"]["tokens"]

    stale = await client.post("/api/auth/refresh", json={"refresh_token": earlier["refresh_token"]})
    assert_error(stale, 401, "invalid_token")
    me = await client.get(
        "/api/users/me", headers={"Authorization": f"Bearer {fresh['access_token']}"}
    )
    assert me.status_code == 200
    assert me.json()["data"]["email"] == "kept-safe@example.com"
    renewed = await client.post("/api/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert renewed.status_code == 200, renewed.text
    logout = await client.post(
        "/api/auth/logout",
        json={"refresh_token": renewed.json()["data"]["tokens"]["refresh_token"]},
    )
    assert logout.status_code == 204


async def test_a_failed_upgrade_ends_no_sign_in(client: httpx.AsyncClient, user: TestUser) -> None:
    guest = (await client.post("/api/auth/guest")).json()["data"]
    taken = await client.post(
        "/api/auth/upgrade",
        json={"email": user.email, "password": PASSWORD},
        headers={"Authorization": f"Bearer {guest['tokens']['access_token']}"},
    )
    assert_error(taken, 409, "conflict")
    still = await client.post(
        "/api/auth/refresh", json={"refresh_token": guest["tokens"]["refresh_token"]}
    )
    assert still.status_code == 200, still.text


async def test_guest_refresh_works(client: httpx.AsyncClient) -> None:
    guest = (await client.post("/api/auth/guest")).json()["data"]
    refreshed = await client.post(
        "/api/auth/refresh", json={"refresh_token": guest["tokens"]["refresh_token"]}
    )
    assert refreshed.status_code == 200


async def test_login_rate_limited_per_address_and_per_email(
    make_user: UserFactory, settings: object
) -> None:
    from fastapi import FastAPI

    from parley.app import create_app
    from tests.fixtures.settings import make_settings

    assert hasattr(settings, "database_url")
    limited: FastAPI = create_app(
        make_settings(
            settings.database_url,  # type: ignore[attr-defined]
            settings.data_dir,  # type: ignore[attr-defined]
            rate_limit_login_per_minute=3,
        )
    )
    target = await make_user()
    async with limited.router.lifespan_context(limited):

        def client_from(address: str) -> httpx.AsyncClient:
            transport = httpx.ASGITransport(app=limited, client=(address, 1234))
            return httpx.AsyncClient(transport=transport, base_url="http://testserver")

        async with client_from("10.0.0.1") as one:
            for _ in range(3):
                response = await one.post(
                    "/api/auth/login", json={"email": "x@example.com", "password": "wrong-pass"}
                )
                assert response.status_code == 401
            limited_answer = await one.post(
                "/api/auth/login", json={"email": "y@example.com", "password": "wrong-pass"}
            )
            assert_error(limited_answer, 429, "rate_limited")
            assert int(limited_answer.headers["retry-after"]) >= 1

        # Per email: three addresses, one email.
        for index in range(3):
            async with client_from(f"10.0.1.{index}") as other:
                response = await other.post(
                    "/api/auth/login", json={"email": target.email, "password": "wrong-pass"}
                )
                assert response.status_code == 401
        async with client_from("10.0.2.1") as fresh:
            response = await fresh.post(
                "/api/auth/login", json={"email": target.email, "password": PASSWORD}
            )
            assert_error(response, 429, "rate_limited")


def assert_not_cached(response: httpx.Response) -> None:
    """RFC 6749 section 5.1: an answer that carries tokens or secrets is never cached."""
    assert response.headers.get_list("cache-control") == ["no-store"], response.headers
    assert response.headers.get_list("pragma") == ["no-cache"], response.headers


async def test_answers_with_tokens_or_secrets_are_not_cached(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    registered = await client.post(
        "/api/auth/register", json={"email": "fresh-nostore@example.com", "password": PASSWORD}
    )
    login = await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    grant = await client.post(
        "/api/auth/token",
        data={"username": user.email, "password": PASSWORD, "grant_type": "password"},
    )
    refreshed = await client.post("/api/auth/refresh", json={"refresh_token": user.refresh_token})
    guest = await client.post("/api/auth/guest")
    guest_headers = {"Authorization": f"Bearer {guest.json()['data']['tokens']['access_token']}"}
    upgraded = await client.post(
        "/api/auth/upgrade",
        json={"email": "upgraded-nostore@example.com", "password": PASSWORD},
        headers=guest_headers,
    )
    key = await client.post("/api/users/me/api-keys", json={"name": "k"}, headers=user.headers)
    answers = {
        "register": (registered, 201),
        "login": (login, 200),
        "token": (grant, 200),
        "refresh": (refreshed, 200),
        "guest": (guest, 201),
        "upgrade": (upgraded, 200),
        "api key": (key, 201),
    }
    for name, (response, status) in answers.items():
        assert response.status_code == status, (name, response.text)
        assert_not_cached(response)
    # Answers without a secret keep the default (a listed key shows its prefix only).
    listed = await client.get("/api/users/me/api-keys", headers=user.headers)
    assert listed.status_code == 200
    assert "cache-control" not in listed.headers
