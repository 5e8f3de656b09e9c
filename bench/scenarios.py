"""The measurements: `/v1/chat/completions` streamed against the fake upstream, the minimal relay
and Parley side by side; chat turns; start-up time and idle memory."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

from bench.load import LoadResult, percentile, run_load
from bench.proc import cpu_seconds, rss_bytes, wait_until_idle
from bench.servers import BENCH_MODEL, PARLEY_MODEL, Server


@dataclass
class Point:
    """One target measured at one load."""

    target: str
    concurrency: int
    result: LoadResult
    cpu_seconds: float | None  # of the target's process tree over the run

    @property
    def cpu_per_1000(self) -> float | None:
        """CPU seconds per 1,000 completed requests."""
        if self.cpu_seconds is None or not self.result.succeeded:
            return None
        return self.cpu_seconds / self.result.succeeded * 1000

    def row(self) -> dict[str, Any]:
        """The figures, rounded for the report."""
        result = self.result
        return {
            "target": self.target,
            "concurrency": self.concurrency,
            "requests": result.requests,
            "failures": dict(result.failures) or "none",
            "req/s": round(result.requests_per_second, 1),
            "ttft p50 ms": round(percentile(result.ttft_ms, 0.5), 2),
            "p50 ms": round(percentile(result.latency_ms, 0.5), 2),
            "p90 ms": round(percentile(result.latency_ms, 0.9), 2),
            "p99 ms": round(percentile(result.latency_ms, 0.99), 2),
            "CPU s / 1k": None if self.cpu_per_1000 is None else round(self.cpu_per_1000, 2),
        }


@dataclass
class Target:
    """Where a `/v1/chat/completions` request goes, and which process pays for it."""

    name: str
    url: str
    model: str
    headers: dict[str, str]
    server: Server


AIOHTTP_RELAY = "relay (aiohttp)"
HTTPX_RELAY = "relay (httpx)"
PORTKEY = "Portkey gateway"
PARLEY_V1 = "Parley /v1"


def gateway_targets(
    upstream: Server,
    parley: Server,
    api_key: str,
    *,
    relays: dict[str, Server],
    portkey: Server | None = None,
) -> list[Target]:
    """The targets of the gateway benchmark: the upstream directly, each relay (by client),
    Portkey's gateway (told the upstream in its own headers) and Parley."""
    targets = [
        Target(
            "upstream (direct)", upstream.url + "/v1/chat/completions", BENCH_MODEL, {}, upstream
        )
    ]
    for client, relay in relays.items():
        targets.append(
            Target(f"relay ({client})", relay.url + "/v1/chat/completions", BENCH_MODEL, {}, relay)
        )
    if portkey is not None:
        targets.append(
            Target(
                PORTKEY,
                portkey.url + "/v1/chat/completions",
                BENCH_MODEL,
                {
                    "Authorization": "Bearer sk-bench",
                    "x-portkey-provider": "openai",
                    "x-portkey-custom-host": upstream.url + "/v1",
                },
                portkey,
            )
        )
    targets.append(
        Target(
            PARLEY_V1,
            parley.url + "/v1/chat/completions",
            PARLEY_MODEL,
            {"Authorization": f"Bearer {api_key}"},
            parley,
        )
    )
    return targets


def completion_body(model: str) -> dict[str, Any]:
    """A streamed chat completion asking for usage, as SDKs send it."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Say something, please."}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }


async def measure(target: Target, *, total: int, concurrency: int) -> Point:
    """Run the load against one target and read its CPU time before and after."""
    body = completion_body(target.model)

    def request(_number: int) -> tuple[str, str, dict[str, Any], dict[str, str]]:
        return "POST", target.url, body, target.headers

    before = cpu_seconds(target.server.pid)
    result = await run_load(request, total=total, concurrency=concurrency)
    after = cpu_seconds(target.server.pid)
    return Point(target.name, concurrency, result, after - before)


async def gateway_matrix(
    targets: list[Target], *, total: int, concurrencies: list[int], warmup: int
) -> list[Point]:
    """Every target at every concurrency, interleaved so that each point is measured beside the
    others under the same machine conditions."""
    for target in targets:
        await measure(target, total=warmup, concurrency=min(8, warmup))
    points = []
    for concurrency in concurrencies:
        for target in targets:
            points.append(
                await measure(target, total=max(total, concurrency), concurrency=concurrency)
            )
    return points


async def make_chats(parley: Server, token: str, total: int) -> list[str]:
    """`total` new chats on the bench model (a chat has one reply at a time)."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=parley.url, headers=headers, timeout=60) as http:
        chats = []
        for _ in range(total):
            response = await http.post("/api/chats", json={"model_id": PARLEY_MODEL})
            response.raise_for_status()
            chats.append(response.json()["data"]["id"])
    return chats


async def run_turns(
    parley: Server, token: str, chats: list[str], *, concurrency: int
) -> LoadResult:
    """One streamed turn in each chat, `concurrency` at a time."""
    headers = {"Authorization": f"Bearer {token}"}

    def request(number: int) -> tuple[str, str, dict[str, Any], dict[str, str]]:
        url = f"{parley.url}/api/chats/{chats[number]}/messages"
        return "POST", url, {"content": "Say something, please."}, headers

    return await run_load(request, total=len(chats), concurrency=concurrency)


async def chat_turns(parley: Server, token: str, *, total: int, concurrency: int) -> Point:
    """Chat turns through `POST /api/chats/{id}/messages` (persisted and streamed), each in a
    chat of its own made beforehand, outside the measured CPU."""
    chats = await make_chats(parley, token, total)
    before = cpu_seconds(parley.pid)
    result = await run_turns(parley, token, chats, concurrency=concurrency)
    after = cpu_seconds(parley.pid)
    return Point("Parley chat turn", concurrency, result, after - before)


def idle_rss(server: Server, *, settle_seconds: float = 2.0) -> int:
    """The server's resident memory once it is idle: its background warm-up (the model
    libraries' imports) done, then a moment more."""
    wait_until_idle(server.pid)
    time.sleep(settle_seconds)
    return rss_bytes(server.pid)


def run(coroutine: Any) -> Any:
    """Run a scenario's coroutine."""
    return asyncio.run(coroutine)
