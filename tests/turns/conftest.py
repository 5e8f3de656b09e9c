"""Fixtures for the streaming turn: the app over the fake upstreams (`upstream_app`, `upstream`,
`api` and `fake_upstreams` come from tests/conftest.py, shared with the usage tests) served by a
real uvicorn server, and the fake Anthropic upstream."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FaultyOpenAI
from tests.fixtures.catalogs import upstream_settings
from tests.fixtures.servers import LiveServer, start_live_server, stop_live_server


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
async def anthropic_upstream(
    upstream: FaultyOpenAI, fake_upstreams: tuple[FaultyOpenAI, FakeAnthropic]
) -> FakeAnthropic:
    """The fake Anthropic upstream (reset with the OpenAI one)."""
    return fake_upstreams[1]
