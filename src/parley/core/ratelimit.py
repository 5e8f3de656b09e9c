"""Rate limits: in this process's memory by default (`MemoryWindows`), in Redis over the `limits`
library when `REDIS_URL` is set, so that several workers share one limit.

A moving one-minute window per key (`login:ip:127.0.0.1`, `login:email:a@b.c`, `v1:user:...`);
an exceeded limit raises `RateLimited` with the seconds until the window frees a slot. The memory
windows are Parley's own: `limits`' memory storage started a task and a thread hop to expire its
entries on every hit (3% of a `/v1` call's CPU, bench/findings.md).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from limits import RateLimitItemPerMinute
from limits.aio.storage import RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from parley.core.errors import RateLimited
from parley.settings import Settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)


WINDOW_SECONDS = 60.0


class MemoryWindows:
    """Moving windows in memory (a minute unless said): per key, the times of the hits it counted
    in the window (never more than its limit), oldest first. Keys with no hit in the window are
    dropped once a window."""

    def __init__(self, window_seconds: float = WINDOW_SECONDS) -> None:
        self.window = window_seconds
        self._hits: dict[str, deque[float]] = {}
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._hits)

    def _window(self, key: str, now: float) -> deque[float]:
        cutoff = now - self.window
        if now >= self._next_sweep:
            self._hits = {k: hits for k, hits in self._hits.items() if hits and hits[-1] > cutoff}
            self._next_sweep = now + self.window
        hits = self._hits.get(key)
        if hits is None:
            hits = self._hits[key] = deque()
            return hits
        while hits and hits[0] <= cutoff:
            hits.popleft()
        return hits

    def hit(self, key: str, limit: int, *, count: bool = True) -> float | None:
        """Count a hit (unless `count` is false); None if it is within `limit`, else the seconds
        until the window frees a slot."""
        now = time.monotonic()
        hits = self._window(key, now)
        if len(hits) >= limit:
            return hits[len(hits) - limit] + self.window - now
        if count:
            hits.append(now)
        return None

    def reset(self) -> None:
        """Forget every count."""
        self._hits.clear()


class RateLimiter:
    """Counts hits per key and refuses those over the limit."""

    def __init__(self, storage: Storage | MemoryWindows) -> None:
        self.storage = storage
        # Without Redis the memory windows count; with it, `limits` over Redis does.
        self._limiter: MovingWindowRateLimiter | None = None
        if isinstance(storage, MemoryWindows):
            self._memory = storage
        else:
            self._memory = MemoryWindows()
            self._limiter = MovingWindowRateLimiter(storage)

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis | None = None) -> RateLimiter:
        """Redis-backed when `REDIS_URL` is set, otherwise in this process's memory.

        Args:
            redis: the app's client; its connection pool is shared (and closed with it).
        """
        if settings.redis_url:
            uri = "async+" + settings.redis_url
            options: dict[str, Any] = {}
            if redis is not None:
                options["connection_pool"] = redis.connection_pool
            storage = RedisStorage(uri, implementation="redispy", key_prefix="parley-rl", **options)
            return cls(storage)
        return cls(MemoryWindows())

    async def hit(self, key: str, per_minute: int, *, message: str | None = None) -> None:
        """Count one request under `key`.

        Raises:
            RateLimited: the key is over `per_minute` requests in the last minute.
        """
        if self._limiter is None:
            wait = self._memory.hit(key, per_minute)
            if wait is not None:
                raise RateLimited(max(1, math.ceil(wait)), message)
            return
        item = RateLimitItemPerMinute(per_minute)
        if await self._limiter.hit(item, key):
            return
        stats = await self._limiter.get_window_stats(item, key)
        retry_after = max(1, math.ceil(stats.reset_time - time.time()))
        raise RateLimited(retry_after, message)

    async def check(self, key: str, per_minute: int, *, message: str | None = None) -> None:
        """Refuse if `key` is already over `per_minute`, without counting this request.

        Raises:
            RateLimited: the key is at its limit.
        """
        if self._limiter is None:
            wait = self._memory.hit(key, per_minute, count=False)
            if wait is not None:
                raise RateLimited(max(1, math.ceil(wait)), message)
            return
        item = RateLimitItemPerMinute(per_minute)
        if await self._limiter.test(item, key):
            return
        stats = await self._limiter.get_window_stats(item, key)
        raise RateLimited(max(1, math.ceil(stats.reset_time - time.time())), message)

    async def reset(self) -> None:
        """Forget every count (tests and admin tools)."""
        self._memory.reset()
        if self._limiter is not None:
            await self._limiter.storage.reset()
