"""The reply event logs, in memory and in Redis: a reader gets the events that wait together in
one batch (the stream sends each batch in one write), in order, to the log's end."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from parley.turns.event_log import EventLogs, MemoryEventLogs, RedisEventLogs

REDIS_URL = "redis://127.0.0.1:6379/13"


@pytest.fixture(params=["memory", "redis"])
async def logs(request: pytest.FixtureRequest) -> AsyncIterator[EventLogs]:
    if request.param == "memory":
        memory = MemoryEventLogs()
        yield memory
        await memory.aclose()
        return
    redis = Redis.from_url(REDIS_URL)
    try:
        yield RedisEventLogs(redis, block_ms=1_000)
    finally:
        await redis.aclose()


async def test_a_reader_behind_the_writer_gets_what_waits_in_one_batch(logs: EventLogs) -> None:
    key = str(uuid.uuid4())
    await logs.open(key)
    for number in range(5):
        assert await logs.append(key, f"chunk {number}") == number + 1
    batches = logs.follow_batches(key)
    first = await anext(batches)
    assert first == [(number + 1, f"chunk {number}") for number in range(5)]

    async def write_more() -> None:
        await asyncio.sleep(0.05)
        await logs.append(key, "chunk 5")
        await logs.append(key, "chunk 6")
        await logs.close(key)

    writer = asyncio.create_task(write_more())
    rest = [batch async for batch in batches]
    await writer
    assert [event for batch in rest for event in batch] == [(6, "chunk 5"), (7, "chunk 6")]
    assert all(rest)  # no empty batch


async def test_following_after_an_id_skips_what_the_reader_has(logs: EventLogs) -> None:
    key = str(uuid.uuid4())
    await logs.open(key)
    for number in range(4):
        await logs.append(key, f"chunk {number}")
    await logs.close(key)
    events = [event async for event in logs.follow(key, after=2)]
    assert events == [(3, "chunk 2"), (4, "chunk 3")]
    assert [event async for event in logs.follow(str(uuid.uuid4()))] == []
