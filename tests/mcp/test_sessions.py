"""Stateful MCP sessions (`MCP_STATELESS=false`) are capped: per user (`MCP_MAX_SESSIONS_PER_USER`,
429 `rate_limited`), per worker (`MCP_MAX_SESSIONS`, 503 `service_unavailable`), each refusal with
`Retry-After` in the error envelope and never at the cost of anyone's open session; and a session
with no request in flight for `MCP_SESSION_IDLE_SECONDS` ends, which frees its room."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.accounts import TestUser, UserFactory
from tests.fixtures.errors import assert_error
from tests.fixtures.mcp import INITIALIZE, mcp_server, open_session, rpc, rpc_headers

LIST_TOOLS = rpc("tools/list", request_id=2)
PER_USER = 2
IN_ALL = 3
IDLE_SECONDS = 1.0


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@pytest.fixture
def capped_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    """A server of its own per test, so that no other test's sessions count."""
    with mcp_server(
        database_url,
        tmp_path,
        mcp_stateless=False,
        mcp_max_sessions_per_user=PER_USER,
        mcp_max_sessions=IN_ALL,
    ) as url:
        yield url


@pytest.fixture
def idle_url(database_url: str, tmp_path: Path) -> Iterator[str]:
    with mcp_server(
        database_url,
        tmp_path,
        mcp_stateless=False,
        mcp_max_sessions_per_user=1,
        mcp_session_idle_seconds=IDLE_SECONDS,
    ) as url:
        yield url


async def _initialize(http: httpx.AsyncClient, url: str, token: str) -> httpx.Response:
    return await http.post(url, json=INITIALIZE, headers=rpc_headers(token))


async def _lists_tools(http: httpx.AsyncClient, url: str, token: str, session_id: str) -> int:
    response = await http.post(url, json=LIST_TOOLS, headers=rpc_headers(token, session_id))
    return response.status_code


def _assert_refused(response: httpx.Response, status: int, code: str) -> None:
    assert_error(response, status, code)
    assert int(response.headers["retry-after"]) >= 1
    assert "session" in response.json()["error"]["message"]
    assert "mcp-session-id" not in response.headers


async def test_a_user_past_their_cap_is_refused_and_others_are_not(
    http: httpx.AsyncClient, capped_url: str, user: TestUser, other_user: TestUser
) -> None:
    token = user.access_token
    held = [await open_session(http, capped_url, token) for _ in range(PER_USER)]

    _assert_refused(await _initialize(http, capped_url, token), 429, "rate_limited")

    # Another user still gets one, and the refused user's sessions are untouched.
    theirs = await open_session(http, capped_url, other_user.access_token)
    assert await _lists_tools(http, capped_url, other_user.access_token, theirs) == 200
    for session_id in held:
        assert await _lists_tools(http, capped_url, token, session_id) == 200

    # Ending one makes room for a new one.
    ended = await http.delete(capped_url, headers=rpc_headers(token, held[0]))
    assert ended.status_code == 200
    await open_session(http, capped_url, token)
    _assert_refused(await _initialize(http, capped_url, token), 429, "rate_limited")


async def test_openings_at_once_cannot_slip_past_the_cap(
    http: httpx.AsyncClient, capped_url: str, user: TestUser
) -> None:
    answers = await asyncio.gather(
        *(_initialize(http, capped_url, user.access_token) for _ in range(PER_USER + 4))
    )
    statuses = sorted(answer.status_code for answer in answers)
    assert statuses == [200] * PER_USER + [429] * 4, statuses


async def test_a_full_worker_refuses_new_sessions_only(
    http: httpx.AsyncClient, capped_url: str, make_user: UserFactory
) -> None:
    first, second, third = await make_user(), await make_user(), await make_user()
    held = [await open_session(http, capped_url, first.access_token) for _ in range(PER_USER)]
    held_by_second = await open_session(http, capped_url, second.access_token)  # IN_ALL now

    _assert_refused(
        await _initialize(http, capped_url, third.access_token), 503, "service_unavailable"
    )

    for session_id in held:
        assert await _lists_tools(http, capped_url, first.access_token, session_id) == 200
    assert await _lists_tools(http, capped_url, second.access_token, held_by_second) == 200


async def test_an_idle_session_expires_and_frees_its_room(
    http: httpx.AsyncClient, idle_url: str, user: TestUser
) -> None:
    token = user.access_token
    session_id = await open_session(http, idle_url, token)
    # Asking for another does not touch the first, so it keeps idling until it expires.
    deadline = time.monotonic() + IDLE_SECONDS + 15
    while (opened := await _initialize(http, idle_url, token)).status_code == 429:
        assert time.monotonic() < deadline, "the idle session never expired"
        await asyncio.sleep(0.2)
    assert opened.status_code == 200, opened.text
    assert opened.headers["mcp-session-id"] != session_id
    assert await _lists_tools(http, idle_url, token, session_id) == 404
