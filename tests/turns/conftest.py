"""Fixtures for the streaming turn: fake OpenAI and Anthropic upstreams (real HTTP servers on
loopback) that can also cut a stream short and record when a client hung up, and an app whose
catalog points at them, with fast saves and short timeouts."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from parley.app import create_app
from parley.llm.catalog_config import load_models_file, plan_catalog
from parley.llm.seeding import seed_catalog
from parley.settings import Settings
from tests.conftest import (
    LiveServer,
    TestUser,
    make_settings,
    start_live_server,
    stop_live_server,
)
from tests.fakes import Reply, Script
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FakeOpenAI

OPENAI_MODEL = "openai:gpt-fake-large"
ANTHROPIC_MODEL = "anthropic:claude-fake"
READ_TIMEOUT_SECONDS = 2.0

MODELS_FILE = f"""
[[models]]
id = "{OPENAI_MODEL}"
name = "Fake GPT"
context_window = 8000
input_price_per_mtok = 2.0
output_price_per_mtok = 8.0

[[models]]
id = "{ANTHROPIC_MODEL}"
name = "Fake Claude"
context_window = 8000
input_price_per_mtok = 3.0
output_price_per_mtok = 15.0
"""


@dataclass
class FaultyOpenAI(FakeOpenAI):
    """The fake OpenAI server, able to cut a stream after some chunks (as a crashed upstream
    would) and recording when a client closed a stream before its end."""

    cut_after_chunks: int | None = None
    stall_after_chunks: int | None = None
    hung_up_at: list[float] = field(default_factory=list)
    finished_at: list[float] = field(default_factory=list)

    async def _stream(self, model: str, reply: Reply, *, include_usage: bool) -> AsyncIterator[str]:
        sent = 0
        completed = False
        try:
            async for line in super()._stream(model, reply, include_usage=include_usage):
                if self.cut_after_chunks is not None and sent >= self.cut_after_chunks:
                    raise RuntimeError("upstream crashed mid-stream")
                if self.stall_after_chunks is not None and sent >= self.stall_after_chunks:
                    await asyncio.sleep(60)  # hangs until the client gives up
                sent += 1
                yield line
            completed = True
        finally:
            if completed:
                self.finished_at.append(time.monotonic())
            elif not (self.cut_after_chunks is not None and sent >= self.cut_after_chunks):
                self.hung_up_at.append(time.monotonic())


@pytest.fixture(scope="session")
def fake_upstreams() -> Iterator[tuple[FaultyOpenAI, FakeAnthropic]]:
    openai = FaultyOpenAI.start()
    anthropic = FakeAnthropic.start()
    try:
        yield openai, anthropic
    finally:
        openai.stop()
        anthropic.stop()


def upstream_settings(
    database_url: str, data_dir: Path, fakes: tuple[FaultyOpenAI, FakeAnthropic], **extra: Any
) -> Settings:
    openai, anthropic = fakes
    models_file = data_dir / "models.toml"
    models_file.write_text(MODELS_FILE, encoding="utf-8")
    values: dict[str, Any] = {
        "openai_api_key": "sk-test",
        "openai_base_url": openai.base_url,
        "openai_models": ["gpt-fake-large"],
        "anthropic_api_key": "sk-ant-test",
        "anthropic_base_url": anthropic.base_url,
        "anthropic_models": ["claude-fake"],
        "gemini_api_key": None,
        "gemini_models": [],
        "models_file": models_file,
        "default_model": OPENAI_MODEL,
        "offline_model_delay_ms": 0,
        "stream_save_interval_ms": 50,
        "provider_read_timeout_seconds": READ_TIMEOUT_SECONDS,
        "provider_max_retries": 2,
    }
    values.update(extra)
    return make_settings(database_url, data_dir, **values)


@pytest.fixture(scope="session")
async def upstream_app(
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    fake_upstreams: tuple[FaultyOpenAI, FakeAnthropic],
) -> AsyncIterator[FastAPI]:
    """An app whose catalog holds the fake upstreams' models (the default: the OpenAI one)."""
    settings = upstream_settings(database_url, tmp_path_factory.mktemp("upstream"), fake_upstreams)
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def upstream_live(
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    fake_upstreams: tuple[FaultyOpenAI, FakeAnthropic],
) -> Iterator[LiveServer]:
    """The same configuration served by a real uvicorn server, for tests that need a real
    connection (an ASGI test transport buffers whole responses, so it cannot hang up midway)."""
    settings = upstream_settings(database_url, tmp_path_factory.mktemp("live"), fake_upstreams)
    live = start_live_server(settings)
    try:
        yield live
    finally:
        stop_live_server(live)


@pytest.fixture
async def upstream(
    upstream_app: FastAPI, fake_upstreams: tuple[FaultyOpenAI, FakeAnthropic]
) -> FaultyOpenAI:
    """The fake OpenAI upstream, reset, with the upstream app's catalog seeded for this test."""
    openai, anthropic = fake_upstreams
    openai.script = Script()
    anthropic.script = Script()
    openai.cut_after_chunks = None
    openai.stall_after_chunks = None
    openai.hung_up_at.clear()
    openai.finished_at.clear()
    async with upstream_app.state.database.sessionmaker() as session:
        settings: Settings = upstream_app.state.settings
        assert settings.models_file is not None
        plan = plan_catalog(settings, file_entries=load_models_file(settings.models_file))
        await seed_catalog(session, plan)
    return openai


@pytest.fixture
async def anthropic_upstream(
    upstream: FaultyOpenAI, fake_upstreams: tuple[FaultyOpenAI, FakeAnthropic]
) -> FakeAnthropic:
    """The fake Anthropic upstream (reset with the OpenAI one)."""
    return fake_upstreams[1]


@pytest.fixture
async def api(upstream_app: FastAPI, upstream: FaultyOpenAI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the upstream app."""
    transport = httpx.ASGITransport(app=upstream_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@dataclass
class StreamEvent:
    id: int
    data: str

    @property
    def chunk(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.data)
        return value


def parse_sse(text: str) -> list[StreamEvent]:
    """The events of a server-sent event stream, checking the framing as it goes."""
    events: list[StreamEvent] = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        lines = block.split("\n")
        assert lines[0].startswith("id: "), block
        assert lines[1].startswith("data: "), block
        events.append(StreamEvent(int(lines[0][4:]), lines[1][6:]))
    return events


def chunk_types(events: list[StreamEvent]) -> list[str]:
    return [event.chunk["type"] for event in events if event.data != "[DONE]"]


async def new_chat(http: httpx.AsyncClient, user: TestUser, **body: Any) -> str:
    response = await http.post("/api/chats", json=body, headers=user.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["id"])


async def wait_for(
    condition: Callable[[], Any], *, within: float = 10.0, interval: float = 0.02
) -> Any:
    """Poll an async condition until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        value = await condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("the condition did not come true in time")
        await asyncio.sleep(interval)
