"""Replies across workers and process deaths: with Redis, a reply generated on one worker is
resumed and stopped through another; a reply left `streaming` by a dead process is marked
`interrupted` at the next start."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import update

from parley.app import create_app
from parley.chats.models import Chat, Message
from parley.core.db import utcnow
from parley.turns.idempotency import purge_expired_keys
from tests.fakes import Reply
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FaultyOpenAI
from tests.fixtures.accounts import TestUser
from tests.fixtures.catalogs import upstream_settings
from tests.fixtures.chats import new_chat
from tests.fixtures.polling import wait_for
from tests.fixtures.servers import start_live_server, stop_live_server
from tests.fixtures.settings import make_settings
from tests.fixtures.streams import chunk_types, parse_sse

REDIS_URL = "redis://127.0.0.1:6379/14"


@pytest.fixture
async def two_workers(
    database_url: str,
    tmp_path: Path,
    fake_upstreams: tuple[FaultyOpenAI, FakeAnthropic],
    upstream: FaultyOpenAI,
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """Two servers on one database and one Redis, as two worker processes would be."""
    settings = upstream_settings(database_url, tmp_path, fake_upstreams, redis_url=REDIS_URL)
    first, second = start_live_server(settings), start_live_server(settings)
    try:
        async with (
            httpx.AsyncClient(base_url=first.url, timeout=30) as one,
            httpx.AsyncClient(base_url=second.url, timeout=30) as two,
        ):
            yield one, two
    finally:
        stop_live_server(first)
        stop_live_server(second)
        redis = Redis.from_url(REDIS_URL)
        await redis.flushdb()
        await redis.aclose()


async def _reply(http: httpx.AsyncClient, user: TestUser, chat_id: str) -> dict[str, object]:
    items = (await http.get(f"/api/chats/{chat_id}/messages", headers=user.headers)).json()
    reply: dict[str, object] = items["data"]["items"][-1]
    return reply


async def test_resume_and_stop_through_another_worker(
    two_workers: tuple[httpx.AsyncClient, httpx.AsyncClient],
    fake_upstreams: tuple[FaultyOpenAI, FakeAnthropic],
    user: TestUser,
) -> None:
    one, two = two_workers
    upstream = fake_upstreams[0]
    upstream.script.push(Reply(text=" ".join(["tick"] * 300), chunk_delay=0.02))
    chat_id = await new_chat(one, user)
    original = asyncio.create_task(
        one.post(f"/api/chats/{chat_id}/messages", json={"content": "Go"}, headers=user.headers)
    )

    async def followed_elsewhere() -> httpx.Response | None:
        async with two.stream(
            "GET", f"/api/chats/{chat_id}/stream", headers=user.headers
        ) as response:
            if response.status_code != 200:
                return None
            lines: list[str] = []
            async for line in response.aiter_lines():
                lines.append(line)
                if sum(1 for item in lines if item.startswith("id: ")) >= 8:
                    break
            return response if lines[0] == "id: 1" else None

    assert await wait_for(followed_elsewhere)
    stop = await two.post(f"/api/chats/{chat_id}/stop", headers=user.headers)
    assert stop.status_code == 204
    events = parse_sse((await original).text)
    assert "abort" in chunk_types(events)
    assert events[-1].data == "[DONE]"

    async def cancelled() -> bool:
        return (await _reply(two, user, chat_id))["status"] == "cancelled"

    await wait_for(cancelled)
    assert (await two.get(f"/api/chats/{chat_id}/stream", headers=user.headers)).status_code == 204


async def test_a_dead_workers_reply_is_marked_interrupted_at_start(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser, database_url: str, tmp_path: Path
) -> None:
    chat_id = await new_chat(client, user)
    message_id = uuid.uuid4()
    async with app.state.database.sessionmaker() as session:
        session.add(
            Message(
                id=message_id,
                chat_id=uuid.UUID(chat_id),
                user_id=uuid.UUID(user.id),
                role="assistant",
                parts=[{"type": "text", "text": "half a rep"}],
                status="streaming",
                model_id="offline:parley",
            )
        )
        await session.flush()
        await session.execute(
            update(Message)
            .where(Message.id == message_id)
            .values(updated_at=utcnow() - timedelta(minutes=5))
        )
        await session.execute(
            update(Chat)
            .where(Chat.id == uuid.UUID(chat_id))
            .values(active_message_id=message_id, current_leaf_id=message_id)
        )
        await session.commit()
    # A stop now finds the slot taken by a reply no process is generating.
    busy = await client.post(
        f"/api/chats/{chat_id}/messages", json={"content": "hi"}, headers=user.headers
    )
    assert busy.status_code == 409

    restarted = create_app(make_settings(database_url, tmp_path, generation_stale_seconds=30))
    async with restarted.router.lifespan_context(restarted):
        reply = await _reply(client, user, chat_id)
        assert reply["status"] == "interrupted"
        assert reply["parts"] == [{"type": "text", "text": "half a rep"}]
    chat = (await client.get(f"/api/chats/{chat_id}", headers=user.headers)).json()["data"]
    assert chat["current_leaf_id"] == str(message_id)
    resumed = await client.get(f"/api/chats/{chat_id}/stream", headers=user.headers)
    assert resumed.status_code == 204
    after = await client.post(
        f"/api/chats/{chat_id}/messages?stream=false", json={"content": "hi"}, headers=user.headers
    )
    assert after.status_code == 201, after.text


async def test_idempotency_keys_past_their_day_are_purged(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser
) -> None:
    from sqlalchemy import func, select

    from parley.turns.models import IdempotencyRecord

    chat_id = uuid.UUID(await new_chat(client, user))
    async with app.state.database.sessionmaker() as session:
        for key, age in (("old", timedelta(hours=25)), ("fresh", timedelta(hours=1))):
            session.add(
                IdempotencyRecord(
                    user_id=uuid.UUID(user.id),
                    key=key,
                    request_hash="x" * 64,
                    chat_id=chat_id,
                    user_message_id=uuid.uuid4(),
                    assistant_message_id=uuid.uuid4(),
                    created_at=utcnow() - age,
                )
            )
        await session.commit()
    await purge_expired_keys(app.state.database)
    async with app.state.database.sessionmaker() as session:
        keys = (await session.execute(select(IdempotencyRecord.key))).scalars().all()
        assert keys == ["fresh"]
        assert await session.scalar(select(func.count()).select_from(IdempotencyRecord)) == 1
