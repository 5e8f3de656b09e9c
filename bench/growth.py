"""Cost that must not grow with history: opening a chat (its current path, the first page) with
10, 1,000 and 10,000 messages; the chat list of a user with 10 and with 10,000 chats; and listing
a user's tasks with each filter when the table holds 1,000 tasks and when it holds 1,000,000
(1,000 users with 1,000 each). Rows are written straight into the database in bulk, then read
through Parley's HTTP API; each figure is the median of sequential requests."""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from bench.pg import postgres_database
from bench.report import Check, table
from bench.servers import (
    BENCH_EMAIL,
    create_bench_user,
    parley_environment,
    sign_in,
    start_parley,
)
from parley.accounts.models import User
from parley.chats.models import Chat, Message
from parley.core.db import new_id
from parley.tasks.models import Task, TaskTag

BATCH = 5000
SAMPLES = 40
TASK_QUERIES = {
    "no filter": "",
    "completed=false": "?completed=false",
    "priority=high": "?priority=high",
    "tag=work": "?tag=work",
    "due_before": "?due_before=2027-01-01T00:00:00Z",
    "due_after": "?due_after=2026-06-01T00:00:00Z",
    "q=report": "?q=report",
    "sort=-due_at": "?sort=-due_at",
    "sort=priority": "?sort=priority",
}


def _batches(rows: Iterable[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


async def _insert(engine: AsyncEngine, table_: Any, rows: Iterable[dict[str, Any]]) -> None:
    for batch in _batches(rows):
        async with engine.begin() as connection:
            await connection.execute(insert(table_), batch)
    # Fresh planner statistics, as autovacuum (PostgreSQL) or `ANALYZE` would give a live
    # database: plans made from stale ones would measure the seeding, not the queries.
    async with engine.begin() as connection:
        await connection.execute(text("ANALYZE"))


def _chain(
    chat_id: uuid.UUID, user_id: uuid.UUID, count: int, start: datetime
) -> Iterator[dict[str, Any]]:
    parent = None
    for index in range(count):
        message_id = new_id()
        role = "user" if index % 2 == 0 else "assistant"
        text = f"message {index}: " + "lorem ipsum dolor sit amet " * 6
        yield {
            "id": message_id,
            "chat_id": chat_id,
            "user_id": user_id,
            "parent_id": parent,
            "role": role,
            "parts": [{"type": "text", "text": text}],
            "search_text": text,
            "status": "complete",
            "created_at": start + timedelta(milliseconds=index),
            "updated_at": start + timedelta(milliseconds=index),
        }
        parent = message_id


async def _chat_with(engine: AsyncEngine, user_id: uuid.UUID, count: int) -> uuid.UUID:
    chat_id = new_id()
    now = datetime.now(UTC)
    rows = list(_chain(chat_id, user_id, count, now - timedelta(days=1)))
    await _insert(
        engine,
        Chat,
        [
            {
                "id": chat_id,
                "user_id": user_id,
                "title": f"{count} messages",
                "archived": False,
                "current_leaf_id": rows[-1]["id"],
                "created_at": now,
                "updated_at": now,
            }
        ],
    )
    await _insert(engine, Message, rows)
    return chat_id


def _users(count: int) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    return [
        {
            "id": new_id(),
            "email": f"filler-{uuid.uuid4().hex}@example.com",
            "display_name": "filler",
            "is_guest": False,
            "is_admin": False,
            "is_active": True,
            "created_at": now,
            "updated_at": now,
        }
        for _ in range(count)
    ]


def _tasks(user_id: uuid.UUID, count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    now = datetime.now(UTC)
    tasks, tags = [], []
    for index in range(count):
        task_id = new_id()
        tasks.append(
            {
                "id": task_id,
                "user_id": user_id,
                "title": f"{'write the report' if index % 10 == 0 else 'task'} {index}",
                "description": None,
                "completed": index % 3 == 0,
                "completed_at": now if index % 3 == 0 else None,
                "priority": 1 + index % 3,
                "due_at": now + timedelta(days=index % 400 - 200) if index % 2 else None,
                "created_at": now - timedelta(seconds=count - index),
                "updated_at": now,
            }
        )
        if index % 4 == 0:
            tags.append({"task_id": task_id, "tag": "work", "user_id": user_id})
    return tasks, tags


async def _add_tasks(engine: AsyncEngine, user_id: uuid.UUID, count: int) -> None:
    tasks, tags = _tasks(user_id, count)
    await _insert(engine, Task.__table__, tasks)
    await _insert(engine, TaskTag, tags)


def _median_ms(http: httpx.Client, path: str, samples: int = SAMPLES) -> float:
    for _ in range(5):
        http.get(path).raise_for_status()
    times = []
    for _ in range(samples):
        started = time.perf_counter()
        http.get(path).raise_for_status()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


class GrowthRun:
    """The growth measurements on one database."""

    def __init__(self, kind: str, env: dict[str, str], logs: Path, task_total: int) -> None:
        self.kind = kind
        self.env = env
        self.logs = logs
        self.task_total = task_total
        url = env.get("DATABASE_URL") or f"sqlite+aiosqlite:///{env['PARLEY_DATA_DIR']}/parley.db"
        # No pool: each seeding step runs in an event loop of its own.
        self.engine = create_async_engine(url, poolclass=NullPool)
        self.rows: list[dict[str, Any]] = []
        self.ratios: dict[str, float] = {}

    async def _user_id(self) -> uuid.UUID:
        async with self.engine.connect() as connection:
            found = await connection.execute(select(User.id).where(User.email == BENCH_EMAIL))
            user_id: uuid.UUID = found.scalar_one()
            return user_id

    def _measure(self, label: str, path: str, http: httpx.Client) -> float:
        value = _median_ms(http, path)
        self.rows.append({"database": self.kind, "read": label, "median ms": round(value, 2)})
        return value

    def run(self) -> None:
        """Seed, serve, measure."""
        create_bench_user(self.env)
        user_id = asyncio.run(self._user_id())
        chats = {count: asyncio.run(self._chat_with(user_id, count)) for count in (10, 1000, 10000)}
        parley = start_parley(self.logs, self.env, name=f"parley-growth-{self.kind}")
        try:
            token = sign_in(parley, budget_usd=None)["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=parley.url, headers=headers, timeout=60) as http:
                opened = {
                    count: self._measure(
                        f"open a chat of {count} messages", f"/api/chats/{chat_id}/messages", http
                    )
                    for count, chat_id in chats.items()
                }
                self.ratios["open a chat: 10,000 vs 10 messages"] = opened[10000] / opened[10]
                # The bench user now has 3 chats; lists of 10 and 10,000 chats:
                small = (
                    self._measure("chat list, 10 chats", "/api/chats", http)
                    if self._fill_chats(user_id, 7)
                    else 0.0
                )
                self._fill_chats(user_id, 9990)
                large = self._measure("chat list, 10,000 chats", "/api/chats", http)
                self.ratios["chat list: 10,000 vs 10 chats"] = large / small
                asyncio.run(_add_tasks(self.engine, user_id, 1000))
                before = {
                    name: self._measure(f"tasks {name}, 1,000 in all", "/api/tasks" + query, http)
                    for name, query in TASK_QUERIES.items()
                }
                asyncio.run(self._fill_tasks())
                for name, query in TASK_QUERIES.items():
                    after = self._measure(
                        f"tasks {name}, {self.task_total:,} in all", "/api/tasks" + query, http
                    )
                    self.ratios[f"tasks {name}: {self.task_total:,} vs 1,000"] = (
                        after / before[name]
                    )
        finally:
            parley.stop()
            asyncio.run(self.engine.dispose())

    async def _chat_with(self, user_id: uuid.UUID, count: int) -> uuid.UUID:
        return await _chat_with(self.engine, user_id, count)

    def _fill_chats(self, user_id: uuid.UUID, count: int) -> bool:
        async def fill() -> None:
            now = datetime.now(UTC) - timedelta(days=2)
            await _insert(
                self.engine,
                Chat,
                (
                    {
                        "id": new_id(),
                        "user_id": user_id,
                        "title": f"filler {index}",
                        "archived": False,
                        "created_at": now,
                        "updated_at": now - timedelta(seconds=index),
                    }
                    for index in range(count)
                ),
            )

        asyncio.run(fill())
        return True

    async def _fill_tasks(self) -> None:
        others = (self.task_total - 1000) // 1000
        users = _users(others)
        await _insert(self.engine, User, users)
        for user in users:
            await _add_tasks(self.engine, user["id"], 1000)


def run(workdir: Path, postgres_url: str, *, quick: bool) -> tuple[list[Check], str]:
    """Both databases; the checks (each at most 2x) and the figures."""
    logs = workdir / "logs"
    task_total = 100_000 if quick else 1_000_000
    runs = []
    sqlite = GrowthRun(
        "SQLite", parley_environment(workdir / "growth-sqlite", None, None), logs, task_total
    )
    sqlite.run()
    runs.append(sqlite)
    with postgres_database(postgres_url, f"parley_growth_{uuid.uuid4().hex[:8]}") as url:
        pg = GrowthRun(
            "PostgreSQL", parley_environment(workdir / "growth-pg", None, url), logs, task_total
        )
        pg.run()
        runs.append(pg)
    checks = [
        Check(f"{name} ({growth.kind})", f"{ratio:.2f}x", "≤ 2x", ratio <= 2)
        for growth in runs
        for name, ratio in growth.ratios.items()
    ]
    rows = [row for growth in runs for row in growth.rows]
    return checks, table(rows)
