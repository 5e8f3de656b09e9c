"""The load generator: a fixed number of requests at a fixed concurrency, each read to its end,
timing the first token (the first body bytes holding the reply's first token) and the whole
response, and counting failures by kind."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

FIRST_TOKEN = b"tok0"


@dataclass
class LoadResult:
    """What a load run saw."""

    requests: int = 0
    wall_seconds: float = 0.0
    ttft_ms: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    failures: Counter[str] = field(default_factory=Counter)

    @property
    def succeeded(self) -> int:
        """Requests answered in full."""
        return len(self.latency_ms)

    @property
    def requests_per_second(self) -> float:
        """Completed requests per second of wall time."""
        return self.succeeded / self.wall_seconds if self.wall_seconds else 0.0


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * len(ordered) + 0.5) - 1))
    return ordered[index]


RequestFactory = Callable[[int], tuple[str, str, dict[str, Any] | None, dict[str, str]]]


async def run_load(
    make_request: RequestFactory,
    *,
    total: int,
    concurrency: int,
    read_timeout: float = 120.0,
    expect_status: int = 200,
) -> LoadResult:
    """Send `total` requests, `concurrency` at a time.

    Args:
        make_request: request number -> (method, url, json body, headers).
        expect_status: the status a successful answer has.
    """
    result = LoadResult()
    counter = iter(range(total))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=read_timeout, limits=limits) as client:

        async def one(number: int) -> None:
            method, url, body, headers = make_request(number)
            started = time.perf_counter()
            first: float | None = None
            try:
                async with client.stream(method, url, json=body, headers=headers) as response:
                    if response.status_code != expect_status:
                        await response.aread()
                        result.failures[f"http_{response.status_code}"] += 1
                        return
                    async for piece in response.aiter_raw():
                        if first is None and FIRST_TOKEN in piece:
                            first = time.perf_counter()
            except httpx.TimeoutException:
                result.failures["timeout"] += 1
                return
            except httpx.TransportError as exc:
                result.failures[type(exc).__name__] += 1
                return
            ended = time.perf_counter()
            result.latency_ms.append((ended - started) * 1000)
            if first is not None:
                result.ttft_ms.append((first - started) * 1000)
            else:
                result.failures["no_first_token"] += 1

        async def worker() -> None:
            for number in counter:
                await one(number)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.wall_seconds = time.perf_counter() - started
        result.requests = total
    return result
