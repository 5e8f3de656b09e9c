"""`/mcp` behind `parley serve --workers 4` on PostgreSQL, started the way the README's PostgreSQL
recipe starts it: the settings written once into `.env`, `parley migrate upgrade`, then
`parley serve --no-migrate --host 0.0.0.0 --workers 4`.

The official `mcp` SDK client, in both protocol eras (the initialize handshake that MCP Inspector
and desktop bridges use, and the 2026-07-28 exchange the SDK negotiates by default), lists the
tools and calls them over a new connection each time, so that the kernel spreads the calls over
the four workers; and again under a public `Host` name, as behind a load balancer. The server
listens on every interface, as in the recipe, but every request here goes to loopback.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import mcp.types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from sqlalchemy.engine import make_url

from tests.fixtures.databases import DEFAULT_POSTGRES_URL, recreate_postgres_database
from tests.fixtures.servers import ServerProcess, clean_environment, parley_serve

WORKERS = 4
CALLS = 4  # of each tool, per client
START_TIMEOUT_SECONDS = 300.0
# Generous: each worker imports the MCP SDK on its first `/mcp` request, all four at once here.
REQUEST_TIMEOUT_SECONDS = 120.0
PUBLIC_NAME = "parley.example.test"
PASSWORD = "a fine long password"


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database (the recipe's `createdb parley`), dropped afterwards."""
    admin_url = os.environ.get("PARLEY_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    name = f"parley_workers_{uuid.uuid4().hex[:12]}"
    asyncio.run(recreate_postgres_database(admin_url, name, create=True))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(recreate_postgres_database(admin_url, name, create=False))


@pytest.fixture(scope="module")
def recipe_server(
    postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    workdir: Path = tmp_path_factory.mktemp("recipe")
    (workdir / ".env").write_text(
        "ENVIRONMENT=production\n"
        f"JWT_SECRET={secrets.token_urlsafe(48)}\n"
        f"DATABASE_URL={postgres_url}\n"
        "REDIS_URL=redis://127.0.0.1:6379/15\n"
        "LOG_LEVEL=WARNING\n",
        encoding="utf-8",
    )
    env = clean_environment()
    subprocess.run(
        [sys.executable, "-m", "parley", "migrate", "upgrade"],
        cwd=workdir,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    args = ("--no-migrate", "--host", "0.0.0.0", "--workers", str(WORKERS))  # noqa: S104
    # Four workers importing the app at once on a shared 2-core machine take their time.
    with parley_serve(workdir, env, *args, start_timeout=START_TIMEOUT_SECONDS) as server:
        yield server


@pytest.fixture(scope="module")
def api_key(recipe_server: ServerProcess) -> str:
    with httpx.Client(base_url=recipe_server.url, timeout=30) as http:
        registered = http.post(
            "/api/auth/register",
            json={"email": f"mcp-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD},
        )
        assert registered.status_code == 201, registered.text
        token = registered.json()["data"]["tokens"]["access_token"]
        created = http.post(
            "/api/users/me/api-keys",
            json={"name": "mcp"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert created.status_code == 201, created.text
        return str(created.json()["data"]["key"])


def _structured(result: types.CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("public_host", [False, True], ids=["loopback-host", "public-host"])
async def test_every_call_succeeds_behind_four_workers(
    recipe_server: ServerProcess, api_key: str, mode: str, public_host: bool
) -> None:
    headers = {"Authorization": f"Bearer {api_key}"}
    if public_host:
        port = recipe_server.url.rsplit(":", 1)[1]
        headers["Host"] = f"{PUBLIC_NAME}:{port}"
    tag = uuid.uuid4().hex[:12]
    # No keep-alive: each request opens a connection of its own, which any worker may accept.
    limits = httpx2.Limits(max_keepalive_connections=0)
    async with (
        httpx2.AsyncClient(headers=headers, limits=limits, timeout=REQUEST_TIMEOUT_SECONDS) as http,
        Client(
            streamable_http_client(f"{recipe_server.url}/mcp", http_client=http), mode=mode
        ) as client,
    ):
        for _ in range(CALLS):
            listed = await client.list_tools()
            assert "add_task" in {tool.name for tool in listed.tools}
        added = [
            _structured(await client.call_tool("add_task", {"title": f"#{n}", "tags": [tag]}))
            for n in range(CALLS)
        ]
        for _ in range(CALLS):
            page = _structured(await client.call_tool("list_tasks", {"tag": tag}))
            assert {item["id"] for item in page["items"]} == {task["id"] for task in added}
