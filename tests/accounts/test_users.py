"""The current user (read, update, password change) and admin user management."""

from __future__ import annotations

import httpx

from tests.fixtures.accounts import PASSWORD, TestUser
from tests.fixtures.errors import assert_error


async def test_update_display_name(client: httpx.AsyncClient, user: TestUser) -> None:
    response = await client.patch(
        "/api/users/me", json={"display_name": "New Name"}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["display_name"] == "New Name"
    me = await client.get("/api/users/me", headers=user.headers)
    assert me.json()["data"]["display_name"] == "New Name"
    bad = await client.patch("/api/users/me", json={"display_name": ""}, headers=user.headers)
    assert_error(bad, 422, "validation_error")
    sneaky = await client.patch("/api/users/me", json={"is_admin": True}, headers=user.headers)
    assert_error(sneaky, 422, "validation_error")
    me = await client.get("/api/users/me", headers=user.headers)
    assert me.json()["data"]["is_admin"] is False


async def test_change_password(client: httpx.AsyncClient, user: TestUser) -> None:
    wrong = await client.post(
        "/api/users/me/password",
        json={"current_password": "not it at all", "new_password": "a brand new one"},
        headers=user.headers,
    )
    assert_error(wrong, 422, "validation_error")
    short = await client.post(
        "/api/users/me/password",
        json={"current_password": PASSWORD, "new_password": "short"},
        headers=user.headers,
    )
    assert_error(short, 422, "validation_error")

    changed = await client.post(
        "/api/users/me/password",
        json={"current_password": PASSWORD, "new_password": "a brand new one"},
        headers=user.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["data"]["id"] == user.id
    old = await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert_error(old, 401, "invalid_credentials")
    new = await client.post(
        "/api/auth/login", json={"email": user.email, "password": "a brand new one"}
    )
    assert new.status_code == 200
    # Every earlier sign-in was ended.
    stale = await client.post("/api/auth/refresh", json={"refresh_token": user.refresh_token})
    assert_error(stale, 401, "invalid_token")


async def test_guest_cannot_change_a_password_it_does_not_have(
    client: httpx.AsyncClient,
) -> None:
    guest = (await client.post("/api/auth/guest")).json()["data"]
    response = await client.post(
        "/api/users/me/password",
        json={"current_password": "anything", "new_password": "a brand new one"},
        headers={"Authorization": f"Bearer {guest['tokens']['access_token']}"},
    )
    assert_error(response, 409, "conflict")


async def test_admin_routes_need_an_admin(
    client: httpx.AsyncClient, user: TestUser, other_user: TestUser
) -> None:
    assert_error(await client.get("/api/admin/users"), 401, "not_authenticated")
    assert_error(await client.get("/api/admin/users", headers=user.headers), 403, "forbidden")
    response = await client.patch(
        f"/api/admin/users/{other_user.id}", json={"is_active": False}, headers=user.headers
    )
    assert_error(response, 403, "forbidden")


async def test_admin_lists_and_searches_users(
    client: httpx.AsyncClient, admin: TestUser, user: TestUser
) -> None:
    listed = await client.get("/api/admin/users", headers=admin.headers)
    assert listed.status_code == 200, listed.text
    items = listed.json()["data"]["items"]
    assert {item["id"] for item in items} == {admin.id, user.id}
    assert items[0]["id"] == user.id  # newest first
    assert "monthly_budget_usd" in items[0]
    assert "password_hash" not in listed.text
    found = await client.get(
        "/api/admin/users", params={"q": (user.email or "")[:12].upper()}, headers=admin.headers
    )
    assert [item["id"] for item in found.json()["data"]["items"]] == [user.id]
    wildcard = await client.get("/api/admin/users", params={"q": "%"}, headers=admin.headers)
    assert wildcard.json()["data"]["items"] == []
    paged = await client.get("/api/admin/users", params={"limit": 1}, headers=admin.headers)
    page = paged.json()["data"]
    assert len(page["items"]) == 1
    assert page["next_cursor"]
    rest = await client.get(
        "/api/admin/users",
        params={"limit": 1, "cursor": page["next_cursor"]},
        headers=admin.headers,
    )
    assert rest.json()["data"]["items"][0]["id"] == admin.id


async def test_admin_deactivates_promotes_and_budgets(
    client: httpx.AsyncClient, admin: TestUser, user: TestUser
) -> None:
    deactivated = await client.patch(
        f"/api/admin/users/{user.id}", json={"is_active": False}, headers=admin.headers
    )
    assert deactivated.status_code == 200, deactivated.text
    assert deactivated.json()["data"]["is_active"] is False
    assert_error(await client.get("/api/users/me", headers=user.headers), 401, "invalid_token")
    login = await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert_error(login, 403, "forbidden")

    reactivated = await client.patch(
        f"/api/admin/users/{user.id}",
        json={"is_active": True, "is_admin": True, "monthly_budget_usd": 12.5},
        headers=admin.headers,
    )
    data = reactivated.json()["data"]
    assert data["is_active"] is True
    assert data["is_admin"] is True
    assert data["monthly_budget_usd"] == 12.5
    # The refresh family was revoked on deactivation; a fresh login works again.
    login = await client.post("/api/auth/login", json={"email": user.email, "password": PASSWORD})
    assert login.status_code == 200
    promoted = login.json()["data"]["tokens"]["access_token"]
    as_admin = await client.get("/api/admin/users", headers={"Authorization": f"Bearer {promoted}"})
    assert as_admin.status_code == 200

    unlimited = await client.patch(
        f"/api/admin/users/{user.id}", json={"monthly_budget_usd": None}, headers=admin.headers
    )
    assert unlimited.json()["data"]["monthly_budget_usd"] is None
    assert unlimited.json()["data"]["is_admin"] is True


async def test_admin_update_errors(client: httpx.AsyncClient, admin: TestUser) -> None:
    missing = await client.patch(
        "/api/admin/users/01890000-0000-7000-8000-000000000000",
        json={"is_active": False},
        headers=admin.headers,
    )
    assert_error(missing, 404, "not_found")
    negative = await client.patch(
        f"/api/admin/users/{admin.id}", json={"monthly_budget_usd": -1}, headers=admin.headers
    )
    assert_error(negative, 422, "validation_error")
    self_demote = await client.patch(
        f"/api/admin/users/{admin.id}", json={"is_admin": False}, headers=admin.headers
    )
    assert_error(self_demote, 409, "conflict")
    self_deactivate = await client.patch(
        f"/api/admin/users/{admin.id}", json={"is_active": False}, headers=admin.headers
    )
    assert_error(self_deactivate, 409, "conflict")
    unknown_field = await client.patch(
        f"/api/admin/users/{admin.id}", json={"email": "x@example.com"}, headers=admin.headers
    )
    assert_error(unknown_field, 422, "validation_error")
