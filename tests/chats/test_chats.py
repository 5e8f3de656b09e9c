"""Chats over HTTP: create, list (search, archive filter, paging, activity order), get, update,
soft delete, and another user's chat."""

from __future__ import annotations

import httpx

from tests.fixtures.accounts import TestUser
from tests.fixtures.errors import assert_error


async def _chat(client: httpx.AsyncClient, user: TestUser, **body: object) -> dict[str, object]:
    response = await client.post("/api/chats", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


async def test_create_and_get(client: httpx.AsyncClient, user: TestUser) -> None:
    chat = await _chat(client, user, title="  Plans  ", system_prompt="Be brief.")
    assert chat["title"] == "Plans"
    assert chat["system_prompt"] == "Be brief."
    assert chat["archived"] is False
    assert chat["current_leaf_id"] is None
    assert chat["model_id"] is None
    fetched = await client.get(f"/api/chats/{chat['id']}", headers=user.headers)
    assert fetched.json()["data"] == chat
    untitled = await _chat(client, user)
    assert untitled["title"] is None
    with_model = await _chat(client, user, model_id="offline:parley")
    assert with_model["model_id"] == "offline:parley"


async def test_create_validation(client: httpx.AsyncClient, user: TestUser) -> None:
    unknown_model = await client.post(
        "/api/chats", json={"model_id": "nope:nothing"}, headers=user.headers
    )
    assert_error(unknown_model, 422, "validation_error")
    too_long = await client.post("/api/chats", json={"title": "x" * 201}, headers=user.headers)
    assert_error(too_long, 422, "validation_error")
    nul = await client.post("/api/chats", json={"title": "a\u0000b"}, headers=user.headers)
    assert_error(nul, 422, "validation_error")
    extra = await client.post("/api/chats", json={"user_id": user.id}, headers=user.headers)
    assert_error(extra, 422, "validation_error")
    anonymous = await client.post("/api/chats", json={})
    assert_error(anonymous, 401, "not_authenticated")


async def test_update_archive_and_filters(client: httpx.AsyncClient, user: TestUser) -> None:
    first = await _chat(client, user, title="Groceries")
    second = await _chat(client, user, title="Holiday plans")
    renamed = await client.patch(
        f"/api/chats/{first['id']}",
        json={"title": "Weekly groceries", "archived": True, "system_prompt": None},
        headers=user.headers,
    )
    assert renamed.status_code == 200, renamed.text
    data = renamed.json()["data"]
    assert data["title"] == "Weekly groceries"
    assert data["archived"] is True

    async def ids(**params: object) -> list[str]:
        response = await client.get("/api/chats", params=params, headers=user.headers)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["data"]["items"]]

    assert await ids(archived=True) == [first["id"]]
    assert await ids(archived=False) == [second["id"]]
    # Newest activity first: the rename moved the first chat to the top.
    assert await ids() == [first["id"], second["id"]]
    assert await ids(q="HOLIDAY") == [second["id"]]
    assert await ids(q="%") == []
    bad = await client.patch(
        f"/api/chats/{first['id']}", json={"model_id": "nope:x"}, headers=user.headers
    )
    assert_error(bad, 422, "validation_error")
    unknown_leaf = await client.patch(
        f"/api/chats/{first['id']}",
        json={"current_leaf_id": "01890000-0000-7000-8000-000000000000"},
        headers=user.headers,
    )
    assert_error(unknown_leaf, 404, "not_found")


async def test_list_pages_without_loss(client: httpx.AsyncClient, user: TestUser) -> None:
    created = [str((await _chat(client, user, title=f"chat {i}"))["id"]) for i in range(7)]
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/api/chats", params=params, headers=user.headers)).json()["data"]
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(created))
    garbage = await client.get("/api/chats", params={"cursor": "garbage"}, headers=user.headers)
    assert_error(garbage, 422, "validation_error")


async def test_soft_delete_removes_the_chat_everywhere(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    chat = await _chat(client, user, title="Doomed")
    deleted = await client.delete(f"/api/chats/{chat['id']}", headers=user.headers)
    assert deleted.status_code == 204
    for method, path in [
        ("GET", f"/api/chats/{chat['id']}"),
        ("PATCH", f"/api/chats/{chat['id']}"),
        ("DELETE", f"/api/chats/{chat['id']}"),
        ("GET", f"/api/chats/{chat['id']}/messages"),
        ("GET", f"/api/chats/{chat['id']}/stream"),
        ("POST", f"/api/chats/{chat['id']}/stop"),
    ]:
        response = await client.request(
            method, path, headers=user.headers, json={} if method == "PATCH" else None
        )
        assert_error(response, 404, "not_found")
    send = await client.post(
        f"/api/chats/{chat['id']}/messages", json={"content": "hi"}, headers=user.headers
    )
    assert_error(send, 404, "not_found")
    listed = await client.get("/api/chats", headers=user.headers)
    assert listed.json()["data"]["items"] == []


async def test_another_users_chat_is_not_found(
    client: httpx.AsyncClient, user: TestUser, other_user: TestUser
) -> None:
    chat = await _chat(client, user, title="Mine")
    base = f"/api/chats/{chat['id']}"
    for method, path, body in [
        ("GET", base, None),
        ("PATCH", base, {"title": "Theirs"}),
        ("DELETE", base, None),
        ("GET", f"{base}/messages", None),
        ("POST", f"{base}/messages", {"content": "hello"}),
        ("GET", f"{base}/stream", None),
        ("POST", f"{base}/stop", None),
    ]:
        response = await client.request(method, path, headers=other_user.headers, json=body)
        assert_error(response, 404, "not_found")
    listed = await client.get("/api/chats", headers=other_user.headers)
    assert listed.json()["data"]["items"] == []
    mine = await client.get(base, headers=user.headers)
    assert mine.json()["data"]["title"] == "Mine"
