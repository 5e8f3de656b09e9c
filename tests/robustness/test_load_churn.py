"""Load with churn: 200 chat turns at once whose clients hang up at random points (some before the
first event, some mid-reply, some never), against a live server on the offline model. Every reply
must end saved and `complete` (a reader going away never stops a reply), and the server must come
back to its idle figures: database connections checked out of the pool, open file descriptors,
asyncio tasks on its loop, and resident memory.

The default run makes one such wave (after a warm-up wave of 200). The full soak of the issue,
10,000 streams with RSS back within 5% of its idle figure, is benchmark-length: it runs only with
`--soak` (`uv run pytest --soak -m soak tests/robustness`), see docs/robustness.md.

The server runs in this process (a uvicorn thread), so the figures are read in-process: the pool
from its engine, the tasks from its event loop, the descriptors and memory from `/proc/self`; the
clients are closed before each reading, the C heap is trimmed before each memory reading (the
allocator's free lists are not leaks: the server trims them itself every minute), and a warm-up
wave comes before the idle reading (first-use caches and imports are not leaks).
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from parley.chats.models import Message
from parley.core.memory import trim_heap
from tests.fixtures.accounts import TestUser, UserFactory
from tests.fixtures.polling import wait_for
from tests.fixtures.servers import LiveServer, start_live_server, stop_live_server
from tests.fixtures.settings import live_settings

CONCURRENT_TURNS = 200
DEFAULT_WAVES = 1
SOAK_STREAMS = 10_000
SEED = 20_260_801
# The descriptors are the whole test process's: other session-long apps in it (their database
# pools, a loopback connection) may hold a few more than at the idle reading. Their budget leases
# from earlier tests end on timers and are released then, which can open a connection in their
# pools (6 more than idle, once, in a PostgreSQL run under xdist). A leak per stream would be
# hundreds.
FD_SLACK = 12


@dataclass(frozen=True)
class Figures:
    """What the server holds while idle."""

    checked_out: int
    tasks: int
    fds: int
    rss_kib: int


@pytest.fixture(scope="module")
def churn_live(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = live_settings(
        database_url,
        tmp_path_factory.mktemp("churn"),
        offline_model_delay_ms=3,
        stream_save_interval_ms=1000,
        db_pool_size=20,
        db_max_overflow=20,
        # SQLite has one writer: 200 turns starting at once queue for it longer than the
        # default 5 s (the request then fails: see docs/robustness.md). PostgreSQL ignores it.
        sqlite_busy_timeout_ms=60_000,
        # Likewise for a connection from the pool (a 503 past it): on a loaded 2-core machine the
        # last of 200 turns waited more than the default 30 s for one of SQLite's 15.
        db_pool_timeout_seconds=120,
        # A finished reply's events stay for resumes this long (a sleeping task each); short
        # here, so that "back to idle" can be observed within the test.
        stream_retention_seconds=1,
    )
    live = start_live_server(settings)
    try:
        yield live
    finally:
        stop_live_server(live)


def _open_fds() -> int:
    return sum(1 for _ in Path("/proc/self/fd").iterdir())


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def _figures(live: LiveServer) -> Figures:
    loop = live.server.servers[0].get_loop()

    async def count_tasks() -> int:
        return len(asyncio.all_tasks())

    tasks = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(count_tasks(), loop))
    checked_out = live.app.state.database.engine.pool.checkedout()

    async def close_idle_connections() -> None:
        await live.app.state.database.engine.dispose()

    # The connections the pool keeps idle are not leaks, and how many it keeps varies (one a
    # hang-up invalidated is replaced only when a later wave needs it): close them, so that the
    # open files counted are the rest of the process's. (Only with none in use: a connection
    # out of the disposed pool would go uncounted.)
    if checked_out == 0:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(close_idle_connections(), loop))
    gc.collect()
    # Memory the C heaps hold free is not the server's: glibc keeps it until trimmed (the server
    # trims every MEMORY_TRIM_INTERVAL_SECONDS). Trimmed, RSS is what is in use; a leak stays.
    trim_heap()
    return Figures(
        checked_out=checked_out,
        tasks=tasks,
        fds=_open_fds(),
        rss_kib=_rss_kib(),
    )


async def _quiet(live: LiveServer) -> Figures:
    """The figures once nothing is running: no connection checked out, the task count steady (a
    periodic sweep or a closing connection may be in flight at any one moment)."""
    previous = await _figures(live)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        latest = await _figures(live)
        if latest.checked_out == 0 and latest.tasks == previous.tasks:
            return latest
        previous = latest
    raise AssertionError(f"the server never went quiet: {previous}")


async def _settled(live: LiveServer, idle: Figures) -> Figures:
    """The figures once they are back at (or under) idle; the last reading if they never are."""
    latest = await _figures(live)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (
        latest.checked_out > idle.checked_out
        or latest.tasks > idle.tasks
        or latest.fds > idle.fds + FD_SLACK
    ):
        await asyncio.sleep(0.2)
        latest = await _figures(live)
    return latest


async def _one_turn(http: httpx.AsyncClient, owner: TestUser, chat_id: str, hang_up: int) -> None:
    """A turn whose client reads `hang_up` lines and goes (-1: to the end)."""
    async with http.stream(
        "POST", f"/api/chats/{chat_id}/messages", json={"content": "hi"}, headers=owner.headers
    ) as response:
        assert response.status_code == 200, await response.aread()
        if hang_up == 0:
            return
        read = 0
        async for _ in response.aiter_lines():
            read += 1
            if read == hang_up:
                return


async def _wave(
    live: LiveServer, app: FastAPI, owners: list[TestUser], rng: random.Random, turns: int
) -> None:
    async with httpx.AsyncClient(
        base_url=live.url, timeout=60, limits=httpx.Limits(max_connections=None)
    ) as http:
        chats = []
        for index in range(turns):
            owner = owners[index % len(owners)]
            chat = await http.post("/api/chats", json={}, headers=owner.headers)
            assert chat.status_code == 201, chat.text
            chats.append((owner, chat.json()["data"]["id"]))
        # A fifth read to the end; the rest hang up after 0..60 lines (a reply is ~200).
        plan = [-1 if rng.random() < 0.2 else rng.randint(0, 60) for _ in chats]
        await asyncio.gather(
            *(
                _one_turn(http, owner, chat_id, hang_up)
                for (owner, chat_id), hang_up in zip(chats, plan, strict=True)
            )
        )

    async def all_saved() -> bool:
        async with app.state.database.sessionmaker() as session:
            streaming = await session.scalar(
                select(func.count()).where(Message.status == "streaming")
            )
        return bool(streaming == 0)

    await wait_for(all_saved, within=120, interval=0.2)


async def _replies(app: FastAPI) -> dict[str, int]:
    async with app.state.database.sessionmaker() as session:
        rows = await session.execute(
            select(Message.status, func.count())
            .where(Message.role == "assistant")
            .group_by(Message.status)
        )
        return {str(status): int(count) for status, count in rows.all()}


async def _run(
    live: LiveServer, app: FastAPI, make_user: UserFactory, streams: int
) -> tuple[Figures, Figures]:
    owners = [await make_user() for _ in range(10)]
    rng = random.Random(SEED)
    # Warm-up at full concurrency: first-use caches and the buffers of 200 streams at once are
    # the idle level, not leaks.
    await _wave(live, app, owners, rng, CONCURRENT_TURNS)
    idle = await _quiet(live)
    done = 0
    while done < streams:
        turns = min(CONCURRENT_TURNS, streams - done)
        await _wave(live, app, owners, rng, turns)
        done += turns
        replies = await _replies(app)
        assert replies == {"complete": CONCURRENT_TURNS + done}, replies
    return idle, await _settled(live, idle)


async def test_churn_leaves_every_reply_complete_and_the_server_idle(
    app: FastAPI, churn_live: LiveServer, make_user: UserFactory
) -> None:
    idle, after = await _run(churn_live, app, make_user, DEFAULT_WAVES * CONCURRENT_TURNS)
    assert after.checked_out == idle.checked_out == 0
    assert after.tasks <= idle.tasks, (idle, after)
    assert after.fds <= idle.fds + FD_SLACK, (idle, after)
    # A couple of hundred streams: the memory may still be finding its level, so the bound is
    # loose here; the soak holds it to 5% over 10,000 streams.
    assert after.rss_kib <= idle.rss_kib * 1.10, (idle, after)


@pytest.mark.soak
async def test_soak_ten_thousand_streams_rss_back_near_idle(
    app: FastAPI, churn_live: LiveServer, make_user: UserFactory
) -> None:
    idle, after = await _run(churn_live, app, make_user, SOAK_STREAMS)
    assert after.checked_out == idle.checked_out == 0
    assert after.tasks <= idle.tasks, (idle, after)
    assert after.fds <= idle.fds + FD_SLACK, (idle, after)
    assert after.rss_kib <= idle.rss_kib * 1.05, (idle, after)
