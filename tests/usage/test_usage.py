"""Usage reports: every chat reply is recorded with its model, key, tokens, cost and latency, and
`GET /api/usage`, `GET /api/usage/records` and `GET /api/admin/usage` report it — each user only
their own, admins everyone's."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.fakes import Reply
from tests.fakes.openai_upstream import FaultyOpenAI
from tests.fixtures.accounts import TestUser
from tests.fixtures.catalogs import OPENAI_MODEL
from tests.fixtures.chats import new_chat

Json = dict[str, Any]
OFFLINE_MODEL = "offline:parley"


async def _turn(api: httpx.AsyncClient, user: TestUser, chat_id: str, **headers: str) -> Json:
    response = await api.post(
        f"/api/chats/{chat_id}/messages?stream=false",
        json={"content": "Hello there"},
        headers={**user.headers, **headers},
    )
    assert response.status_code == 201, response.text
    message: Json = response.json()["data"]["assistant_message"]
    return message


async def _usage(api: httpx.AsyncClient, user: TestUser, query: str = "") -> Json:
    response = await api.get(f"/api/usage{query}", headers=user.headers)
    assert response.status_code == 200, response.text
    data: Json = response.json()["data"]
    return data


async def _api_key(api: httpx.AsyncClient, user: TestUser) -> tuple[str, str]:
    response = await api.post(
        "/api/users/me/api-keys", json={"name": "script"}, headers=user.headers
    )
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    return data["id"], data["key"]


async def test_a_new_user_has_no_usage_and_no_budget(client: httpx.AsyncClient, user: TestUser):
    data = await _usage(client, user)
    assert data["totals"] == {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0, "requests": 0}
    assert data["groups"] == []
    now = datetime.now(UTC)
    assert data["budget"]["period"] == now.strftime("%Y-%m")
    assert data["budget"]["monthly_budget_usd"] is None
    assert data["budget"]["remaining_usd"] is None
    assert datetime.fromisoformat(data["from"]) == datetime(now.year, now.month, 1, tzinfo=UTC)


async def test_chat_replies_are_recorded_with_their_cost(
    api: httpx.AsyncClient, upstream: FaultyOpenAI, user: TestUser
):
    upstream.script.push(
        Reply(text="One", input_tokens=1000, output_tokens=500),
        Reply(text="Two", input_tokens=2000, output_tokens=100),
    )
    chat_id = await new_chat(api, user, model_id=OPENAI_MODEL)
    first = await _turn(api, user, chat_id)
    second = await _turn(api, user, chat_id)
    # $2 and $8 per million tokens in and out
    assert first["usage"]["cost_usd"] == pytest.approx((1000 * 2 + 500 * 8) / 1e6)
    assert second["usage"]["cost_usd"] == pytest.approx((2000 * 2 + 100 * 8) / 1e6)

    data = await _usage(api, user, "?group_by=model")
    assert data["totals"]["requests"] == 2
    assert data["totals"]["input_tokens"] == 3000
    assert data["totals"]["output_tokens"] == 600
    assert data["totals"]["cost_usd"] == pytest.approx(0.0108)
    assert [group["key"] for group in data["groups"]] == [OPENAI_MODEL]
    assert data["groups"][0]["requests"] == 2
    assert data["budget"]["spent_usd"] == pytest.approx(0.0108)
    assert data["budget"]["reserved_usd"] == 0

    day = await _usage(api, user, "?group_by=day")
    assert [group["key"] for group in day["groups"]] == [datetime.now(UTC).date().isoformat()]

    records = (await api.get("/api/usage/records", headers=user.headers)).json()["data"]
    assert [record["message_id"] for record in records["items"]] == [second["id"], first["id"]]
    newest = records["items"][0]
    assert newest["source"] == "chat"
    assert newest["chat_id"] == chat_id
    assert newest["status"] == "complete"
    assert newest["model_id"] == OPENAI_MODEL
    assert newest["api_key_id"] is None
    assert newest["latency_ms"] >= 0


async def test_replies_started_with_an_api_key_carry_it(
    api: httpx.AsyncClient, upstream: FaultyOpenAI, user: TestUser
):
    key_id, secret = await _api_key(api, user)
    chat_id = await new_chat(api, user, model_id=OFFLINE_MODEL)
    await _turn(api, user, chat_id)  # with the access token
    await api.post(
        f"/api/chats/{chat_id}/messages?stream=false",
        json={"content": "And again"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    groups = (await _usage(api, user, "?group_by=api_key"))["groups"]
    by_key = {group["key"]: group["requests"] for group in groups}
    assert by_key == {None: 1, key_id: 1}
    keyed = (await api.get(f"/api/usage/records?api_key_id={key_id}", headers=user.headers)).json()[
        "data"
    ]["items"]
    assert len(keyed) == 1
    assert keyed[0]["api_key_id"] == key_id


async def test_the_window_and_its_validation(
    api: httpx.AsyncClient, upstream: FaultyOpenAI, user: TestUser
):
    chat_id = await new_chat(api, user, model_id=OFFLINE_MODEL)
    await _turn(api, user, chat_id)
    today = datetime.now(UTC).date()
    # A date `to` includes that whole day; a window before today holds nothing.
    assert (await _usage(api, user, f"?from={today}&to={today}"))["totals"]["requests"] == 1
    yesterday = today - timedelta(days=1)
    assert (await _usage(api, user, f"?from={yesterday}&to={yesterday}"))["totals"]["requests"] == 0
    for query, field in (
        ("?from=yesterday", "query.from"),
        ("?to=2026-13-40", "query.to"),
        (f"?from={today}&to={yesterday}", "query.to"),
        ("?group_by=week", "query.group_by"),
    ):
        response = await api.get(f"/api/usage{query}", headers=user.headers)
        assert response.status_code == 422, query
        body = response.json()
        assert body["error"]["code"] == "validation_error"
        assert body["error"]["details"][0]["field"] == field


async def test_usage_is_private(
    api: httpx.AsyncClient, upstream: FaultyOpenAI, user: TestUser, other_user: TestUser
):
    chat_id = await new_chat(api, user, model_id=OFFLINE_MODEL)
    await _turn(api, user, chat_id)
    assert (await _usage(api, other_user))["totals"]["requests"] == 0
    records = (await api.get("/api/usage/records", headers=other_user.headers)).json()["data"]
    assert records["items"] == []
    assert (await api.get("/api/usage")).status_code == 401
    response = await api.get("/api/admin/usage", headers=user.headers)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"


async def test_admins_see_usage_per_user_page_by_page(
    api: httpx.AsyncClient,
    upstream: FaultyOpenAI,
    user: TestUser,
    other_user: TestUser,
    admin: TestUser,
):
    upstream.script.push(Reply(text="Priced", input_tokens=1000, output_tokens=1000))
    chat_id = await new_chat(api, user, model_id=OPENAI_MODEL)
    await _turn(api, user, chat_id)
    seen: dict[str, Json] = {}
    cursor: str | None = None
    pages = 0
    while True:
        query = "?limit=1" + (f"&cursor={cursor}" if cursor else "")
        response = await api.get(f"/api/admin/usage{query}", headers=admin.headers)
        assert response.status_code == 200, response.text
        page = response.json()["data"]
        pages += 1
        for item in page["items"]:
            seen[item["user_id"]] = item
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages >= 3
    assert {user.id, other_user.id, admin.id} <= set(seen)
    assert seen[user.id]["requests"] == 1
    assert seen[user.id]["cost_usd"] == pytest.approx(0.01)
    assert seen[user.id]["email"] == user.email
    assert seen[other_user.id]["requests"] == 0
    assert seen[other_user.id]["cost_usd"] == 0
    forged = await api.get("/api/admin/usage?cursor=forged", headers=admin.headers)
    assert forged.status_code in (400, 422)
