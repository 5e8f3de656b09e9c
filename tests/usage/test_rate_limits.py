"""Per-user rate limits on chat turns: over `RATE_LIMIT_CHAT_PER_MINUTE` a turn is 429
`rate_limited` with `Retry-After` before anything is stored; with Redis the count is shared by
every worker, so two apps on one Redis enforce one limit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.fixtures.accounts import TestUser
from tests.fixtures.apps import running_app
from tests.fixtures.chats import new_chat
from tests.fixtures.settings import make_settings

OFFLINE_MODEL = "offline:parley"
REDIS_URL = "redis://127.0.0.1:6379/0"


async def _send(http: httpx.AsyncClient, user: TestUser, chat_id: str) -> httpx.Response:
    return await http.post(
        f"/api/chats/{chat_id}/messages?stream=false",
        json={"content": "Hello"},
        headers=user.headers,
    )


def _assert_limited(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) >= 1


async def test_chat_turns_are_limited_per_user(database_url: str, tmp_path: Path, make_user: Any):
    settings = make_settings(
        database_url, tmp_path, rate_limit_chat_per_minute=2, offline_model_delay_ms=0
    )
    user: TestUser = await make_user()
    other: TestUser = await make_user()
    async with running_app(settings) as (_app, http):
        chat_id = await new_chat(http, user, model_id=OFFLINE_MODEL)
        assert (await _send(http, user, chat_id)).status_code == 201
        assert (await _send(http, user, chat_id)).status_code == 201
        limited = await _send(http, user, chat_id)
        _assert_limited(limited)
        # A regeneration is a turn too; nothing of the refused turns was stored.
        messages = (await http.get(f"/api/chats/{chat_id}/messages", headers=user.headers)).json()[
            "data"
        ]["items"]
        assert len(messages) == 4
        regenerate = await http.post(
            f"/api/chats/{chat_id}/messages/{messages[-1]['id']}/regenerate", headers=user.headers
        )
        _assert_limited(regenerate)
        # Another user has a limit of their own.
        other_chat = await new_chat(http, other, model_id=OFFLINE_MODEL)
        assert (await _send(http, other, other_chat)).status_code == 201


async def test_workers_share_one_limit_through_redis(
    database_url: str, tmp_path: Path, make_user: Any
):
    settings = make_settings(
        database_url,
        tmp_path,
        rate_limit_chat_per_minute=3,
        offline_model_delay_ms=0,
        redis_url=REDIS_URL,
    )
    user: TestUser = await make_user()
    async with running_app(settings) as (_first, one), running_app(settings) as (_second, two):
        chats = [await new_chat(one, user, model_id=OFFLINE_MODEL) for _ in range(2)]
        assert (await _send(one, user, chats[0])).status_code == 201
        assert (await _send(two, user, chats[1])).status_code == 201
        assert (await _send(one, user, chats[0])).status_code == 201
        # The fourth turn within the minute is refused whichever worker it reaches.
        _assert_limited(await _send(two, user, chats[1]))
        _assert_limited(await _send(one, user, chats[0]))
