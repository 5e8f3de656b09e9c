"""Per-user rate limits on `/v1` (`RATE_LIMIT_V1_PER_MINUTE`): a 429 the `openai` SDK raises as
`RateLimitError`, with `Retry-After`; with Redis, one limit shared by every worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FaultyOpenAI
from tests.fixtures.accounts import TestUser, create_api_key
from tests.fixtures.catalogs import OFFLINE_MODEL, gateway_settings
from tests.fixtures.gateway import sdk
from tests.fixtures.servers import LiveServer, start_live_server_off_loop, stop_live_server_off_loop

LIMIT = 3
REDIS_URL = "redis://127.0.0.1:6379/0"
HI: list[Any] = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
async def limited_live(
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    gateway_fakes: tuple[FaultyOpenAI, FakeAnthropic],
) -> AsyncIterator[LiveServer]:
    settings = gateway_settings(
        database_url,
        tmp_path_factory.mktemp("limited"),
        gateway_fakes,
        rate_limit_v1_per_minute=LIMIT,
    )
    live = await start_live_server_off_loop(settings)
    try:
        yield live
    finally:
        await stop_live_server_off_loop(live)


@pytest.fixture(scope="module")
async def redis_workers(
    database_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    gateway_fakes: tuple[FaultyOpenAI, FakeAnthropic],
) -> AsyncIterator[tuple[LiveServer, LiveServer]]:
    """Two workers sharing Redis (each test's user has a key space of its own there)."""
    workers = []
    try:
        for name in ("worker-a", "worker-b"):
            settings = gateway_settings(
                database_url,
                tmp_path_factory.mktemp(name),
                gateway_fakes,
                rate_limit_v1_per_minute=LIMIT,
                redis_url=REDIS_URL,
            )
            workers.append(await start_live_server_off_loop(settings))
        yield workers[0], workers[1]
    finally:
        for live in workers:
            await stop_live_server_off_loop(live)


async def test_over_the_limit_is_a_rate_limit_error(
    limited_live: LiveServer, client: httpx.AsyncClient, user: TestUser, other_user: TestUser
) -> None:
    key = await create_api_key(client, user)
    oai = sdk(f"{limited_live.url}/v1", key)
    try:
        for _ in range(LIMIT):
            await oai.chat.completions.create(model=OFFLINE_MODEL, messages=HI)
        with pytest.raises(openai.RateLimitError) as caught:
            await oai.chat.completions.create(model=OFFLINE_MODEL, messages=HI)
    finally:
        await oai.close()
    assert caught.value.status_code == 429
    assert caught.value.type == "requests"
    assert caught.value.code == "rate_limit_exceeded"
    assert 1 <= int(caught.value.response.headers["retry-after"]) <= 60
    # The limit is the user's, not everyone's.
    other = sdk(f"{limited_live.url}/v1", other_user.access_token)
    try:
        await other.models.list()
    finally:
        await other.close()


async def test_raw_429_is_in_openai_shape(limited_live: LiveServer, user: TestUser) -> None:
    headers = {"Authorization": f"Bearer {user.access_token}"}
    async with httpx.AsyncClient(base_url=limited_live.url) as http:
        responses = [await http.get("/v1/models", headers=headers) for _ in range(LIMIT + 1)]
    assert [response.status_code for response in responses] == [200] * LIMIT + [429]
    refused = responses[-1]
    assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert set(refused.json()["error"]) == {"message", "type", "param", "code"}
    assert refused.headers["retry-after"]
    assert refused.headers["x-trace-id"]


async def test_workers_share_the_limit_through_redis(
    redis_workers: tuple[LiveServer, LiveServer], client: httpx.AsyncClient, user: TestUser
) -> None:
    key = await create_api_key(client, user)
    first, second = (sdk(f"{live.url}/v1", key) for live in redis_workers)
    try:
        # LIMIT calls spread over both workers use up the one shared limit...
        for index in range(LIMIT):
            await (first if index % 2 == 0 else second).models.list()
        # ...so both refuse the next.
        for worker in (first, second):
            with pytest.raises(openai.RateLimitError):
                await worker.chat.completions.create(model=OFFLINE_MODEL, messages=HI)
    finally:
        await first.close()
        await second.close()
