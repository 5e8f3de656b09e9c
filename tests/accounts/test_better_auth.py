"""Interoperability with the real Better Auth (the `better-auth` npm package and its JWT plugin,
pinned in tests/better_auth/package.json): a user signs up over Better Auth's own HTTP API, gets
a JWT the way a Better Auth app does (`GET /api/auth/token` with the session cookie, or the
`set-auth-jwt` header of `GET /api/auth/get-session`), and Parley, configured with nothing but
`AUTH_ISSUER` and `AUTH_JWKS_URL`, accepts that token on `/api`, `/v1` and `/mcp`.

The server is tests/better_auth/server.mjs on a free loopback port, run by Node; its packages come
from `npm ci --prefix tests/better_auth` (a missing install fails these tests, never skips them).
"""

from __future__ import annotations

import contextlib
import json
import queue
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from parley.accounts.models import ExternalIdentity
from parley.settings import Settings
from tests.fakes.loopback import free_port
from tests.fixtures.apps import running_app
from tests.fixtures.errors import assert_error
from tests.fixtures.mcp import mcp_client
from tests.fixtures.servers import (
    LiveServer,
    start_live_server_off_loop,
    stop_live_server_off_loop,
)
from tests.fixtures.settings import make_settings

BETTER_AUTH_DIR = Path(__file__).resolve().parent.parent / "better_auth"
SERVER_SCRIPT = BETTER_AUTH_DIR / "server.mjs"
INSTALL_HINT = "run `npm ci --prefix tests/better_auth`"
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
SESSION_COOKIE = "better-auth.session_token"
PASSWORD = "correct-horse-battery-staple"
NAME = "Ada Lovelace"
# Better Auth's JWT plugin: tokens live 15 minutes unless `jwt.expirationTime` says otherwise.
LIFETIME_SECONDS = 15 * 60


# -- the Better Auth server ----------------------------------------------------------------------


@dataclass
class BetterAuthServer:
    """`server.mjs` running in a child process: its base URL and what it printed."""

    url: str
    process: subprocess.Popen[str]
    output: list[str] = field(default_factory=list)

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/api/auth/jwks"

    def printed(self) -> str:
        return "".join(self.output) or "(nothing)"


def _read_lines(stream: Any, output: list[str], lines: queue.Queue[str | None]) -> None:
    """Collect what the server prints (so that its pipe never fills), line by line."""
    for line in stream:
        output.append(line)
        lines.put(line)
    lines.put(None)


def _stop(process: subprocess.Popen[str]) -> None:
    """Close the server's stdin (it exits on that), then SIGTERM, then SIGKILL."""
    if process.stdin is not None:
        with contextlib.suppress(OSError):
            process.stdin.close()
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_SECONDS)


@pytest.fixture(scope="module")
def better_auth() -> Iterator[BetterAuthServer]:
    """A real Better Auth server on a free loopback port, for this module."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("Node.js is needed to run the real Better Auth server (tests/better_auth)")
    if not (BETTER_AUTH_DIR / "node_modules" / "better-auth" / "package.json").is_file():
        pytest.fail(f"Better Auth is not installed in tests/better_auth: {INSTALL_HINT}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with subprocess.Popen(
        [node, str(SERVER_SCRIPT), str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        errors="replace",
    ) as process:
        server = BetterAuthServer(url, process)
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(
            target=_read_lines,
            args=(process.stdout, server.output, lines),
            name="better-auth-output",
            daemon=True,
        )
        reader.start()
        try:
            deadline = time.monotonic() + READY_TIMEOUT_SECONDS
            while True:
                remaining = deadline - time.monotonic()
                try:
                    line = lines.get(timeout=max(remaining, 0.0))
                except queue.Empty:
                    pytest.fail(
                        f"Better Auth did not print `listening {url}` within "
                        f"{READY_TIMEOUT_SECONDS:.0f} s; it printed:\n{server.printed()}"
                    )
                if line is None:
                    pytest.fail(
                        f"Better Auth exited ({process.wait()}) before it was ready "
                        f"(is it installed? {INSTALL_HINT}); it printed:\n{server.printed()}"
                    )
                if line.strip() == f"listening {url}":
                    break
            yield server
        finally:
            _stop(process)
            reader.join(timeout=STOP_TIMEOUT_SECONDS)


@dataclass(frozen=True)
class BetterAuthUser:
    """A user signed up at Better Auth: its user record, session cookie and a JWT of its own."""

    id: str
    email: str
    name: str
    cookie: str
    token: str


def describe(token: str) -> str:
    """A token's header and claims, decoded without checking anything (for failure messages)."""
    try:
        header = jwt.get_unverified_header(token)
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        return f"not a JWT: {exc}"
    return f"header {json.dumps(header)}\nclaims {json.dumps(claims)}"


@pytest.fixture(scope="module")
async def ada(better_auth: BetterAuthServer) -> BetterAuthUser:
    """A user signed up over Better Auth's HTTP API, and the JWT its `/token` endpoint gives."""
    email = f"ada-{uuid.uuid4().hex[:12]}@example.com"
    async with httpx.AsyncClient(base_url=better_auth.url, timeout=30) as http:
        signed_up = await http.post(
            "/api/auth/sign-up/email", json={"email": email, "password": PASSWORD, "name": NAME}
        )
        assert signed_up.status_code == 200, f"{signed_up.text}\n{better_auth.printed()}"
        user = signed_up.json()["user"]
        cookies = [
            header.split(";", 1)[0]
            for header in signed_up.headers.get_list("set-cookie")
            if header.startswith(f"{SESSION_COOKIE}=")
        ]
        assert len(cookies) == 1, signed_up.headers
        got = await http.get("/api/auth/token", headers={"Cookie": cookies[0]})
        assert got.status_code == 200, f"{got.text}\n{better_auth.printed()}"
    return BetterAuthUser(
        id=user["id"],
        email=user["email"],
        name=user["name"],
        cookie=cookies[0],
        token=got.json()["token"],
    )


# -- Parley, trusting that server ----------------------------------------------------------------


@pytest.fixture
def parley_settings(better_auth: BetterAuthServer, database_url: str, tmp_path: Path) -> Settings:
    """Parley configured for Better Auth the way its docs say: the issuer and its JWKS, nothing
    else (the audience defaults to the issuer, the algorithms to EdDSA and RS256)."""
    return make_settings(
        database_url, tmp_path, auth_issuer=better_auth.url, auth_jwks_url=better_auth.jwks_url
    )


@pytest.fixture
async def parley(parley_settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(parley_settings) as running:
        yield running


@pytest.fixture
async def parley_server(parley_settings: Settings) -> AsyncIterator[LiveServer]:
    live = await start_live_server_off_loop(parley_settings)
    try:
        yield live
    finally:
        await stop_live_server_off_loop(live)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def tampered(token: str) -> str:
    """The token with one character of its signature changed (one in the middle: the last one
    of an Ed25519 signature carries padding bits, which a decoder may ignore)."""
    header, payload, signature = token.split(".")
    middle = len(signature) // 2
    replacement = "A" if signature[middle] != "A" else "B"
    return f"{header}.{payload}.{signature[:middle]}{replacement}{signature[middle + 1 :]}"


async def me(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.get("/api/users/me", headers=bearer(token))


# -- the token Better Auth gives -----------------------------------------------------------------


async def test_better_auth_signs_eddsa_with_its_base_url_as_issuer_and_audience(
    better_auth: BetterAuthServer, ada: BetterAuthUser
) -> None:
    header = jwt.get_unverified_header(ada.token)
    claims = jwt.decode(ada.token, options={"verify_signature": False})
    assert header["alg"] == "EdDSA", describe(ada.token)
    assert claims["iss"] == claims["aud"] == better_auth.url, describe(ada.token)
    assert claims["sub"] == ada.id, describe(ada.token)
    assert claims["email"] == ada.email, describe(ada.token)
    assert claims["name"] == NAME, describe(ada.token)
    assert claims["exp"] - claims["iat"] == LIFETIME_SECONDS, describe(ada.token)
    async with httpx.AsyncClient(timeout=30) as http:
        jwks = (await http.get(better_auth.jwks_url)).json()
    [key] = [key for key in jwks["keys"] if key["kid"] == header["kid"]]
    assert (key["kty"], key["crv"], key["alg"]) == ("OKP", "Ed25519", "EdDSA")


# -- accepted by Parley --------------------------------------------------------------------------


async def test_a_better_auth_token_signs_in_on_api(
    parley: tuple[FastAPI, httpx.AsyncClient], better_auth: BetterAuthServer, ada: BetterAuthUser
) -> None:
    app, http = parley
    response = await me(http, ada.token)
    assert response.status_code == 200, f"{response.text}\n{describe(ada.token)}"
    user = response.json()["data"]
    assert user["email"] == ada.email
    assert user["display_name"] == ada.name == NAME
    assert user["is_guest"] is False
    assert user["is_admin"] is False
    again = await me(http, ada.token)
    assert again.status_code == 200, again.text
    assert again.json()["data"]["id"] == user["id"]
    async with app.state.database.sessionmaker() as session:
        rows = await session.execute(
            select(ExternalIdentity).where(
                ExternalIdentity.issuer == better_auth.url, ExternalIdentity.subject == ada.id
            )
        )
        [identity] = rows.scalars()
    assert str(identity.user_id) == user["id"]


async def test_the_set_auth_jwt_header_of_get_session_is_the_same_user(
    parley: tuple[FastAPI, httpx.AsyncClient], better_auth: BetterAuthServer, ada: BetterAuthUser
) -> None:
    _, http = parley
    async with httpx.AsyncClient(base_url=better_auth.url, timeout=30) as auth:
        session = await auth.get("/api/auth/get-session", headers={"Cookie": ada.cookie})
    assert session.status_code == 200, session.text
    assert session.json()["user"]["id"] == ada.id
    token = session.headers["set-auth-jwt"]
    first = await me(http, ada.token)
    second = await me(http, token)
    assert second.status_code == 200, f"{second.text}\n{describe(token)}"
    assert second.json()["data"]["id"] == first.json()["data"]["id"]


async def test_a_better_auth_token_works_on_v1(
    parley: tuple[FastAPI, httpx.AsyncClient], ada: BetterAuthUser
) -> None:
    _, http = parley
    response = await http.get("/v1/models", headers=bearer(ada.token))
    assert response.status_code == 200, f"{response.text}\n{describe(ada.token)}"
    assert response.json()["object"] == "list"


async def test_a_better_auth_token_works_on_mcp(
    parley_server: LiveServer, ada: BetterAuthUser
) -> None:
    async with mcp_client(f"{parley_server.url}/mcp", ada.token) as session:
        tools = await session.list_tools()
        added = await session.call_tool("add_task", {"title": "From the real Better Auth"})
    assert "add_task" in {tool.name for tool in tools.tools}
    assert not added.is_error, added.content


# -- refused by Parley ---------------------------------------------------------------------------


async def test_a_tampered_better_auth_token_is_refused(
    parley: tuple[FastAPI, httpx.AsyncClient], ada: BetterAuthUser
) -> None:
    _, http = parley
    forged = tampered(ada.token)
    assert forged != ada.token
    assert_error(await me(http, forged), 401, "invalid_token")
    assert (await me(http, ada.token)).status_code == 200
