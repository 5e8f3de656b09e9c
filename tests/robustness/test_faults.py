"""Faults: the server killed with SIGKILL mid-reply and restarted; a PostgreSQL backend terminated
mid-request; the model provider hanging mid-stream; Redis stopped while configured."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from sqlalchemy import select
from sqlalchemy.engine import make_url

from parley.chats.models import Message
from parley.llm.catalog_config import load_models_file, plan_catalog
from parley.llm.seeding import seed_catalog
from parley.settings import Settings
from tests.fakes import Reply
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FaultyOpenAI
from tests.fakes.upstreams import running_upstreams
from tests.fixtures.accounts import TestUser
from tests.fixtures.apps import running_app
from tests.fixtures.catalogs import upstream_settings
from tests.fixtures.chats import branch, text_of
from tests.fixtures.errors import assert_envelope_error
from tests.fixtures.polling import wait_for
from tests.fixtures.servers import (
    LiveServer,
    ServerProcess,
    clean_environment,
    free_port,
    parley_serve,
    start_live_server,
    stop_live_server,
)
from tests.fixtures.settings import TEST_JWT_SECRET, make_settings


def _serve_env(database_url: str, data_dir: Path, **extra: str) -> dict[str, str]:
    return clean_environment(
        DATABASE_URL=database_url,
        PARLEY_DATA_DIR=str(data_dir),
        JWT_SECRET=TEST_JWT_SECRET,
        LOG_LEVEL="WARNING",
        RATE_LIMIT_CHAT_PER_MINUTE="10000",
        RATE_LIMIT_LOGIN_PER_MINUTE="10000",
        OFFLINE_MODEL_DELAY_MS="60",
        STREAM_SAVE_INTERVAL_MS="100",
        **extra,
    )


async def _saved_reply(app: FastAPI, message_id: str) -> tuple[str, list[dict[str, Any]]]:
    """The reply's row as it is in the database: status and parts."""
    async with app.state.database.sessionmaker() as session:
        row = (
            await session.execute(
                select(Message.status, Message.parts).where(Message.id == uuid.UUID(message_id))
            )
        ).one()
    return str(row.status), list(row.parts)


@dataclass
class Seen:
    """What the reader of a reply saw before the server died."""

    message_id: str = ""
    streamed: str = ""


async def _read_then_kill(
    app: FastAPI,
    http: httpx.AsyncClient,
    server: ServerProcess,
    user: TestUser,
    chat_id: str,
    seen: Seen,
) -> None:
    """Follow a reply; once some of it is streamed and saved, SIGKILL the server."""
    async with http.stream(
        "POST",
        f"/api/chats/{chat_id}/messages",
        json={"content": "who are you?"},
        headers=user.headers,
    ) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[6:])
            if chunk["type"] == "start":
                seen.message_id = chunk["messageId"]
            elif chunk["type"] == "text-delta":
                seen.streamed += chunk["delta"]
            status, parts = await _saved_reply(app, seen.message_id)
            if len(seen.streamed) > 60 and parts and parts[0].get("text"):
                assert status == "streaming"
                server.process.send_signal(signal.SIGKILL)
                await asyncio.to_thread(server.process.wait, 10)


async def test_a_reply_killed_mid_stream_is_interrupted_with_its_saved_text(
    app: FastAPI,
    client: httpx.AsyncClient,
    database_url: str,
    tmp_path: Path,
    user: TestUser,
    admin: TestUser,
) -> None:
    # A priced model and a budget: the reply holds an estimate, and is billed once it ends.
    priced = await client.patch(
        "/api/admin/models/offline:parley",
        json={"input_price_per_mtok": "1000", "output_price_per_mtok": "2000"},
        headers=admin.headers,
    )
    assert priced.status_code == 200, priced.text
    budget = await client.patch(
        f"/api/admin/users/{user.id}", json={"monthly_budget_usd": "100"}, headers=admin.headers
    )
    assert budget.status_code == 200, budget.text
    env = _serve_env(database_url, tmp_path / "data")
    seen = Seen()
    with parley_serve(tmp_path, env, "--no-migrate") as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            chat = await http.post("/api/chats", json={}, headers=user.headers)
            chat_id = chat.json()["data"]["id"]
            with pytest.raises(httpx.TransportError):  # the server dies under the reader
                await _read_then_kill(app, http, server, user, chat_id, seen)
    message_id, streamed = seen.message_id, seen.streamed
    assert server.process.returncode == -signal.SIGKILL
    status, at_death = await _saved_reply(app, message_id)
    assert status == "streaming"  # nobody got to say otherwise
    saved_text = "".join(part["text"] for part in at_death if part["type"] == "text")
    assert saved_text
    assert streamed.startswith(saved_text), (saved_text, streamed)

    await asyncio.sleep(1.2)  # past the restarted server's staleness limit
    with parley_serve(tmp_path, {**env, "GENERATION_STALE_SECONDS": "1"}, "--no-migrate") as again:
        async with httpx.AsyncClient(base_url=again.url, timeout=30) as http:
            reply = (await branch(http, user, chat_id))[-1]
            assert reply["id"] == message_id
            assert reply["status"] == "interrupted"
            assert reply["parts"] == at_death  # exactly the text streamed up to the last save
            resumed = await http.get(f"/api/chats/{chat_id}/stream", headers=user.headers)
            assert resumed.status_code == 204
            after = await http.post(
                f"/api/chats/{chat_id}/messages",
                params={"stream": "false"},
                json={"content": "add a task to check the logs"},
                headers=user.headers,
            )
            assert after.status_code == 201, after.text  # the chat is free again
            assert after.json()["data"]["assistant_message"]["status"] == "complete"
            # The cut-off reply is billed once, for what it had produced: the prompt's estimate
            # in, at least what was saved out; its hold is released.
            usage = reply["usage"]
            assert usage is not None
            assert usage["input_tokens"] > 0
            assert usage["output_tokens"] >= len(saved_text) // 4
            records = await http.get(
                "/api/usage/records", params={"source": "chat"}, headers=user.headers
            )
            assert records.status_code == 200, records.text
            mine = [r for r in records.json()["data"]["items"] if r["message_id"] == message_id]
            assert len(mine) == 1, mine
            [record] = mine
            assert record["status"] == "interrupted"
            assert (record["input_tokens"], record["output_tokens"]) == (
                usage["input_tokens"],
                usage["output_tokens"],
            )
            expected = (usage["input_tokens"] * 1000 + usage["output_tokens"] * 2000) / 1e6
            assert record["cost_usd"] == pytest.approx(expected)
            assert usage["cost_usd"] == pytest.approx(expected)
            report = await http.get("/api/usage", headers=user.headers)
            spent = report.json()["data"]["budget"]
            assert spent["reserved_usd"] == 0
            after_usage = after.json()["data"]["assistant_message"]["usage"]
            assert spent["spent_usd"] == pytest.approx(expected + after_usage["cost_usd"])


def _asyncpg_dsn(database_url: str) -> dict[str, Any]:
    url = make_url(database_url)
    return {
        "host": url.host or "127.0.0.1",
        "port": url.port or 5432,
        "user": url.username or "postgres",
        "password": url.password,
        "database": url.database,
    }


@pytest.fixture
def postgres_only(db_kind: str) -> None:
    if db_kind != "postgres":
        pytest.skip("pg_terminate_backend is PostgreSQL's; SQLite has no server backend to end")


@pytest.mark.usefixtures("postgres_only")
async def test_a_terminated_postgres_backend_fails_one_request_only(
    database_url: str, tmp_path: Path, user: TestUser
) -> None:
    settings = make_settings(database_url, tmp_path)
    admin = await asyncpg.connect(**_asyncpg_dsn(database_url))
    try:
        async with running_app(settings) as (_, http):
            created = await http.post("/api/tasks", json={"title": "kept"}, headers=user.headers)
            assert created.status_code == 201
            # Hold the tasks table, so the next list waits on the lock in its backend.
            locker = await asyncpg.connect(**_asyncpg_dsn(database_url))
            transaction = locker.transaction()
            await transaction.start()
            await locker.execute("LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
            request = asyncio.create_task(http.get("/api/tasks", headers=user.headers))

            async def waiting_backend() -> int | None:
                pid = await admin.fetchval(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> $1 AND query ILIKE '%tasks%'",
                    locker.get_server_pid(),
                )
                return int(pid) if pid is not None else None

            pid = await wait_for(waiting_backend, within=15, interval=0.05)
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            await transaction.rollback()
            await locker.close()
            failed = await asyncio.wait_for(request, 30)
            code = assert_envelope_error(failed, (500, 503))
            assert code in ("internal_error", "service_unavailable")
            for leak in ("SELECT", "asyncpg", "terminat", "Traceback"):
                assert leak not in failed.text

            # The next requests succeed, on fresh connections.
            for _ in range(5):
                listed = await http.get("/api/tasks", headers=user.headers)
                assert listed.status_code == 200, listed.text
                assert [t["title"] for t in listed.json()["data"]["items"]] == ["kept"]
            # Every connection of the database ended at once (a PostgreSQL restart): the pool's
            # pre-ping replaces them, and no request fails.
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            for _ in range(5):
                made = await http.post("/api/tasks", json={"title": "new"}, headers=user.headers)
                assert made.status_code == 201, made.text
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def hanging_upstream() -> Iterator[tuple[FaultyOpenAI, FakeAnthropic]]:
    with running_upstreams() as fakes:
        yield fakes


@pytest.fixture(scope="module")
def hanging_live(
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    hanging_upstream: tuple[FaultyOpenAI, FakeAnthropic],
) -> Iterator[LiveServer]:
    settings = upstream_settings(database_url, tmp_path_factory.mktemp("hang"), hanging_upstream)
    live = start_live_server(settings)
    try:
        yield live
    finally:
        stop_live_server(live)


async def test_a_hanging_provider_times_out_and_keeps_the_partial_reply(
    app: FastAPI,
    hanging_live: LiveServer,
    hanging_upstream: tuple[FaultyOpenAI, FakeAnthropic],
    user: TestUser,
) -> None:
    settings: Settings = hanging_live.app.state.settings
    assert settings.models_file is not None
    async with app.state.database.sessionmaker() as session:
        await seed_catalog(
            session, plan_catalog(settings, file_entries=load_models_file(settings.models_file))
        )
    upstream = hanging_upstream[0]
    upstream.script.reset()
    upstream.stall_after_chunks = 4  # the role chunk and three words, then silence
    upstream.script.push(Reply(text="alpha beta gamma delta epsilon"))
    try:
        async with httpx.AsyncClient(base_url=hanging_live.url, timeout=60) as http:
            chat = await http.post("/api/chats", json={}, headers=user.headers)
            chat_id = chat.json()["data"]["id"]
            started = time.monotonic()
            response = await http.post(
                f"/api/chats/{chat_id}/messages", json={"content": "go"}, headers=user.headers
            )
            elapsed = time.monotonic() - started
            chunks = [
                json.loads(line[6:])
                for line in response.text.splitlines()
                if line.startswith("data: {")
            ]
            reply = (await branch(http, user, chat_id))[-1]
    finally:
        upstream.stall_after_chunks = None
    # The upstream stalls for 60 s: ending well before that means the read timeout fired (the
    # margin allows for a loaded machine and the first turn's model-library import).
    assert elapsed < 45, elapsed
    assert response.text.rstrip().endswith("data: [DONE]")
    streamed = "".join(c["delta"] for c in chunks if c["type"] == "text-delta")
    assert streamed == "alpha beta gamma"
    assert [c for c in chunks if c["type"] == "error"]
    assert reply["status"] == "error"
    assert reply["error"]["code"] == "provider_timeout"
    assert text_of(reply) == streamed  # the partial reply is saved


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A Redis server of this test's own on a free port (never the machine's shared one)."""
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            ping = subprocess.run(
                ["redis-cli", "-p", str(port), "ping"], capture_output=True, check=False
            )
            if ping.stdout.strip() == b"PONG":
                break
            assert time.monotonic() < deadline, "the private Redis did not start"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


@pytest.fixture
async def redis_live(
    database_url: str, tmp_path: Path, private_redis: tuple[str, subprocess.Popen[bytes]]
) -> AsyncIterator[LiveServer]:
    from tests.fixtures.settings import live_settings

    live = start_live_server(live_settings(database_url, tmp_path, redis_url=private_redis[0]))
    try:
        yield live
    finally:
        await asyncio.to_thread(stop_live_server, live)


async def test_redis_stopped_shows_in_readiness_and_the_rest_keeps_working(
    redis_live: LiveServer, private_redis: tuple[str, subprocess.Popen[bytes]], user: TestUser
) -> None:
    redis_url, redis_process = private_redis
    async with httpx.AsyncClient(base_url=redis_live.url, timeout=30) as http:
        ready = await http.get("/health/ready")
        assert ready.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}
        chat = (await http.post("/api/chats", json={}, headers=user.headers)).json()["data"]
        turn = await http.post(
            f"/api/chats/{chat['id']}/messages",
            params={"stream": "false"},
            json={"content": "hi"},
            headers=user.headers,
        )
        assert turn.status_code == 201, turn.text
        probe = Redis.from_url(redis_url)
        assert await probe.ping()
        await probe.aclose()

        redis_process.send_signal(signal.SIGKILL)
        redis_process.wait(timeout=10)

        started = time.monotonic()
        ready = await http.get("/health/ready")
        assert time.monotonic() - started < 10
        assert ready.status_code == 503
        assert ready.json() == {
            "status": "unavailable",
            "checks": {"database": "ok", "redis": "unavailable"},
        }
        assert (await http.get("/health/live")).status_code == 200
        # What does not need Redis keeps working.
        assert (await http.get("/api/users/me", headers=user.headers)).status_code == 200
        task = await http.post("/api/tasks", json={"title": "no redis"}, headers=user.headers)
        assert task.status_code == 201, task.text
        task_id = task.json()["data"]["id"]
        patched = await http.patch(
            f"/api/tasks/{task_id}", json={"completed": True}, headers=user.headers
        )
        assert patched.status_code == 200
        assert (await http.get("/api/tasks", headers=user.headers)).status_code == 200
        assert (await http.post("/api/chats", json={}, headers=user.headers)).status_code == 201
        assert (await http.get("/api/chats", headers=user.headers)).status_code == 200
        messages = await http.get(f"/api/chats/{chat['id']}/messages", headers=user.headers)
        assert messages.status_code == 200
        assert (await http.get("/api/models", headers=user.headers)).status_code == 200
        assert (await http.get("/api/usage", headers=user.headers)).status_code == 200
        # What does need it (a turn's event log and shared rate limits) fails in the envelope,
        # promptly, rather than hanging or half-starting.
        started = time.monotonic()
        refused = await http.post(
            f"/api/chats/{chat['id']}/messages",
            json={"content": "and now?"},
            headers=user.headers,
        )
        assert time.monotonic() - started < 15
        assert assert_envelope_error(refused, 503) == "service_unavailable"
        stuck = (await branch(http, user, chat["id"]))[-1]
        assert stuck["status"] != "streaming"
