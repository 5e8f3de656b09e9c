"""Tokens under pressure: two refreshes racing with one refresh token over real connections (one
wins, and the family ends consistent: revoked whole), and `Authorization` headers holding SQL or
10 KB of garbage or control characters on every surface (401, never 500)."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from parley.accounts.models import RefreshToken
from parley.core.security import decode_token
from tests.fixtures.accounts import TestUser, UserFactory
from tests.fixtures.servers import LiveServer

RACES = 5


async def test_racing_refreshes_leave_one_winner_and_a_revoked_family(
    app: FastAPI, robust_live: LiveServer, make_user: UserFactory
) -> None:
    settings = app.state.settings
    for _ in range(RACES):
        owner = await make_user()
        family = decode_token(settings.jwt_key, owner.refresh_token, expected_type="refresh")
        # Two clients, two connections: the requests really run at the same time.
        async with (
            httpx.AsyncClient(base_url=robust_live.url, timeout=30) as one,
            httpx.AsyncClient(base_url=robust_live.url, timeout=30) as two,
        ):
            body = {"refresh_token": owner.refresh_token}
            answers = await asyncio.gather(
                one.post("/api/auth/refresh", json=body), two.post("/api/auth/refresh", json=body)
            )
            assert sorted(a.status_code for a in answers) == [200, 401], [a.text for a in answers]
            loser = next(a for a in answers if a.status_code == 401)
            assert loser.json()["error"]["code"] == "invalid_token"
            winner = next(a for a in answers if a.status_code == 200)
            new_refresh = winner.json()["data"]["tokens"]["refresh_token"]
            replay = await one.post("/api/auth/refresh", json={"refresh_token": new_refresh})
            assert replay.status_code == 401  # the reuse revoked the family, winner's token too
        async with app.state.database.sessionmaker() as session:
            first = await session.get(RefreshToken, family.token_id)
            assert first is not None
            tokens = (
                (
                    await session.execute(
                        select(RefreshToken).where(RefreshToken.family_id == first.family_id)
                    )
                )
                .scalars()
                .all()
            )
        assert len(tokens) == 2, "exactly one token was issued from the raced one"
        assert all(token.revoked_at is not None for token in tokens)
        assert first.spent_at is not None
        assert all(token.user_id == uuid.UUID(owner.id) for token in tokens)


GARBAGE = [
    "Bearer ' OR '1'='1",
    "Bearer '; DROP TABLE users; --",
    "Bearer pk_' OR 1=1 --",
    "Bearer pk_" + "A" * 60,
    "Bearer " + "x" * 10_240,
    "Bearer " + "pk_" + "%" * 10_240,
    "x" * 10_240,
    "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0.",
    "Bearer a.b.c",
    "Basic YWRtaW46YWRtaW4=",
    "Bearer",
    "Bearer  x",
    "bearer \t token",
]


async def test_hostile_authorization_headers_are_401_on_every_surface(
    robust_live: LiveServer, user: TestUser
) -> None:
    async with httpx.AsyncClient(base_url=robust_live.url, timeout=30) as http:
        chat = (await http.post("/api/chats", json={}, headers=user.headers)).json()["data"]
        targets = [
            ("GET", "/api/users/me", None),
            ("GET", "/api/tasks", None),
            ("POST", "/api/tasks", {"title": "x"}),
            ("GET", f"/api/chats/{chat['id']}/stream", None),
            ("POST", f"/api/chats/{chat['id']}/messages", {"content": "x"}),
            ("GET", "/v1/models", None),
            (
                "POST",
                "/v1/chat/completions",
                {"model": "offline:parley", "messages": [{"role": "user", "content": "x"}]},
            ),
            ("POST", "/mcp", {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
        ]
        raw_garbage = [value.encode() for value in GARBAGE] + [b"Bearer \xff\xfe\x80 latin-1"]
        for method, path, body in targets:
            for value in raw_garbage:
                response = await http.request(
                    method,
                    path,
                    json=body,
                    headers=[
                        (b"Authorization", value),
                        (b"Accept", b"application/json, text/event-stream"),
                    ],
                )
                assert response.status_code == 401, (path, value[:40], response.text[:300])
                assert response.headers.get("www-authenticate", "").lower().startswith("bearer")
                assert "Traceback" not in response.text


@pytest.mark.parametrize(
    "token",
    # NULs inside an API key's lookup prefix (its first 15 characters) reach the query.
    [b"pk_abc\x00defghijklmnop", b"pk_\x00\x01\x02\x7f", b"eyJhbGciOi\x00.e30.sig", b"a\x00"],
)
async def test_control_characters_in_a_token_are_401_on_every_surface(
    client: httpx.AsyncClient, token: bytes
) -> None:
    """A real HTTP server refuses these in a header before Parley sees them; an ASGI server or a
    proxy may not, and a NUL reaching PostgreSQL in a query is a database error: each is a 401."""
    for method, path in (("GET", "/api/users/me"), ("GET", "/v1/models"), ("POST", "/mcp")):
        response = await client.request(
            method,
            path,
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"} if path == "/mcp" else None,
            headers=[
                (b"Authorization", b"Bearer " + token),
                (b"Accept", b"application/json, text/event-stream"),
                (b"Host", b"127.0.0.1"),  # /mcp refuses hosts other than loopback (DNS rebinding)
            ],
        )
        assert response.status_code == 401, (path, token, response.text[:300])
