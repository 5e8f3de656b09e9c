"""Rate limits over the `limits` library: in memory by default, in Redis when `REDIS_URL` is set,
so that several workers share one limit.

A moving window per key (`login:ip:127.0.0.1`, `login:email:a@b.c`, ...); an exceeded limit raises
`RateLimited` with the seconds until the window frees a slot.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from parley.core.errors import RateLimited
from parley.settings import Settings

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)


class RateLimiter:
    """Counts hits per key and refuses those over the limit."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
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
            storage: Storage = RedisStorage(
                uri, implementation="redispy", key_prefix="parley-rl", **options
            )
        else:
            storage = MemoryStorage()
        return cls(storage)

    async def hit(self, key: str, per_minute: int, *, message: str | None = None) -> None:
        """Count one request under `key`.

        Raises:
            RateLimited: the key is over `per_minute` requests in the last minute.
        """
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
        item = RateLimitItemPerMinute(per_minute)
        if await self._limiter.test(item, key):
            return
        stats = await self._limiter.get_window_stats(item, key)
        raise RateLimited(max(1, math.ceil(stats.reset_time - time.time())), message)

    async def reset(self) -> None:
        """Forget every count (tests and admin tools)."""
        await self.storage.reset()
