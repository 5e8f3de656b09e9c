"""Rate limits: in memory, shared through Redis between limiter instances (as between workers), and
the 429 `rate_limited` answer with `Retry-After` over HTTP."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from limits.aio.storage import RedisStorage
from redis.asyncio import Redis

from parley.core.errors import RateLimited
from parley.core.ratelimit import MemoryWindows, RateLimiter
from tests.fixtures.apps import running_app
from tests.fixtures.settings import make_settings

REDIS_TEST_URL = "redis://127.0.0.1:6379/15"


async def test_memory_limiter_refuses_past_the_limit(database_url: str, tmp_path: Path) -> None:
    limiter = RateLimiter.from_settings(make_settings(database_url, tmp_path))
    assert isinstance(limiter.storage, MemoryWindows)
    for _ in range(3):
        await limiter.hit("login:ip:10.0.0.1", 3)
    with pytest.raises(RateLimited) as caught:
        await limiter.hit("login:ip:10.0.0.1", 3, message="Slow down.")
    error = caught.value
    assert 1 <= error.retry_after_seconds <= 60
    assert error.headers == {"Retry-After": str(error.retry_after_seconds)}
    assert error.status_code == 429
    assert error.code == "rate_limited"
    assert error.message == "Slow down."


async def test_memory_limiter_counts_keys_apart_and_resets(
    database_url: str, tmp_path: Path
) -> None:
    limiter = RateLimiter.from_settings(make_settings(database_url, tmp_path))
    await limiter.hit("a", 1)
    await limiter.hit("b", 1)  # another key has its own budget
    with pytest.raises(RateLimited):
        await limiter.hit("a", 1)
    await limiter.reset()
    await limiter.hit("a", 1)


@pytest.fixture
async def redis_tag() -> AsyncIterator[str]:
    """A tag unique to this test for Redis keys; every key carrying it is deleted afterwards."""
    tag = f"ratelimit-test-{uuid.uuid4().hex}"
    yield tag
    client = Redis.from_url(REDIS_TEST_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"*{tag}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def _close(limiter: RateLimiter) -> None:
    assert isinstance(limiter.storage, RedisStorage)
    await limiter.storage.bridge.storage.aclose()


async def test_redis_limiters_share_one_limit(
    database_url: str, tmp_path: Path, redis_tag: str
) -> None:
    settings = make_settings(database_url, tmp_path, redis_url=REDIS_TEST_URL)
    worker_one = RateLimiter.from_settings(settings)
    worker_two = RateLimiter.from_settings(settings)
    key = f"login:email:{redis_tag}@example.com"
    try:
        assert isinstance(worker_one.storage, RedisStorage)
        await worker_one.hit(key, 3)
        await worker_two.hit(key, 3)
        await worker_one.hit(key, 3)
        with pytest.raises(RateLimited) as caught:
            await worker_two.hit(key, 3)
        assert 1 <= caught.value.retry_after_seconds <= 60
        # Another key is untouched by this one's count.
        await worker_two.hit(f"{key}:other", 3)
        client = Redis.from_url(REDIS_TEST_URL)
        try:
            stored = [k async for k in client.scan_iter(match=f"parley-rl*{redis_tag}*")]
        finally:
            await client.aclose()
        assert stored, "the counts were not kept in Redis under the parley-rl prefix"
    finally:
        await _close(worker_one)
        await _close(worker_two)


async def test_login_past_the_limit_is_429_with_retry_after(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(database_url, tmp_path, rate_limit_login_per_minute=3)
    credentials = {"email": "nobody@example.com", "password": "not the password"}
    async with running_app(settings) as (application, http):
        answers = [await http.post("/api/auth/login", json=credentials) for _ in range(4)]
        other_client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application, client=("10.9.8.7", 4000)),
            base_url="http://testserver",
        )
        async with other_client:
            # Same email from another address: the per-email limit holds as well.
            from_elsewhere = await other_client.post("/api/auth/login", json=credentials)

    assert [answer.status_code for answer in answers[:3]] == [401, 401, 401]
    limited = answers[3]
    assert limited.status_code == 429, limited.text
    body = limited.json()
    assert body["error"]["code"] == "rate_limited"
    assert body["trace_id"] == limited.headers["x-trace-id"]
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert from_elsewhere.status_code == 429


async def test_memory_windows_move_and_forget_idle_keys() -> None:
    """A slot frees when the hit that filled it leaves the window (not at a fixed boundary); the
    wait it reports is until then; a key with no hit in the window is dropped."""
    windows = MemoryWindows(window_seconds=0.4)
    assert windows.hit("k", 2) is None
    await asyncio.sleep(0.2)
    assert windows.hit("k", 2) is None
    wait = windows.hit("k", 2)
    assert wait is not None
    assert 0.05 < wait <= 0.2  # the first hit leaves at 0.4 s
    assert windows.hit("k", 2, count=False) is not None
    await asyncio.sleep(wait + 0.02)
    assert windows.hit("k", 2, count=False) is None  # one slot free, not counted
    assert windows.hit("k", 2) is None
    assert windows.hit("k", 2) is not None  # the second and third hits fill it again
    await asyncio.sleep(0.85)  # past a window with no hit: the next sweep drops "k"
    assert windows.hit("other", 1) is None
    assert len(windows) == 1
