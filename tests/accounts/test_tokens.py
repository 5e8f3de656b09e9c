"""Tokens that must fail do, with 401 in the envelope, on a protected route."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import timedelta

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, update

from parley.accounts.models import User
from parley.core.db import utcnow
from parley.core.security import encode_token
from tests.fixtures.accounts import TestUser
from tests.fixtures.errors import assert_error
from tests.fixtures.settings import TEST_JWT_SECRET


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")


def _claims(user_id: str, **overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": "parley",
        "sub": user_id,
        "jti": str(uuid.uuid4()),
        "type": "access",
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return claims


async def _me(client: httpx.AsyncClient, authorization: str) -> httpx.Response:
    return await client.get("/api/users/me", headers={"Authorization": authorization})


async def test_valid_token_works(client: httpx.AsyncClient, user: TestUser) -> None:
    assert (await _me(client, f"Bearer {user.access_token}")).status_code == 200


async def test_missing_credentials(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/users/me"), 401, "not_authenticated")
    assert_error(await _me(client, "Basic dXNlcjpwYXNz"), 401, "not_authenticated")
    assert_error(await _me(client, "Bearer"), 401, "not_authenticated")


async def test_alg_none_is_refused(client: httpx.AsyncClient, user: TestUser) -> None:
    token = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims(user.id))}."
    assert_error(await _me(client, f"Bearer {token}"), 401, "invalid_token")


async def test_wrong_key_is_refused(client: httpx.AsyncClient, user: TestUser) -> None:
    token = jwt.encode(_claims(user.id), "another-secret-" + "y" * 40, algorithm="HS256")
    assert_error(await _me(client, f"Bearer {token}"), 401, "invalid_token")


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")
async def test_other_algorithm_is_refused(client: httpx.AsyncClient, user: TestUser) -> None:
    # The right secret, signed with HS512: only the pinned algorithm (HS256) is accepted.
    token = jwt.encode(_claims(user.id), TEST_JWT_SECRET, algorithm="HS512")
    assert_error(await _me(client, f"Bearer {token}"), 401, "invalid_token")


async def test_expired_token_is_refused(client: httpx.AsyncClient, user: TestUser) -> None:
    token, _ = encode_token(
        TEST_JWT_SECRET,
        subject=uuid.UUID(user.id),
        token_type="access",
        ttl_seconds=60,
        token_id=uuid.uuid4(),
        now=utcnow() - timedelta(hours=1),
    )
    assert_error(await _me(client, f"Bearer {token}"), 401, "invalid_token")


@pytest.mark.parametrize("missing", ["sub", "exp", "iat", "jti", "type", "iss"])
async def test_token_without_a_required_claim_is_refused(
    client: httpx.AsyncClient, user: TestUser, missing: str
) -> None:
    claims = _claims(user.id)
    del claims[missing]
    token = jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS256")
    assert_error(await _me(client, f"Bearer {token}"), 401, "invalid_token")


async def test_refresh_token_is_not_an_access_token(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    assert_error(await _me(client, f"Bearer {user.refresh_token}"), 401, "invalid_token")


async def test_token_of_a_deleted_user_is_refused(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI
) -> None:
    async with app.state.database.sessionmaker() as session:
        await session.execute(delete(User).where(User.id == uuid.UUID(user.id)))
        await session.commit()
    assert_error(await _me(client, f"Bearer {user.access_token}"), 401, "invalid_token")


async def test_token_of_a_deactivated_user_is_refused_at_once(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI
) -> None:
    async with app.state.database.sessionmaker() as session:
        await session.execute(
            update(User).where(User.id == uuid.UUID(user.id)).values(is_active=False)
        )
        await session.commit()
    body = assert_error(await _me(client, f"Bearer {user.access_token}"), 401, "invalid_token")
    assert "deactivated" in str(body["error"])
    refresh = await client.post("/api/auth/refresh", json={"refresh_token": user.refresh_token})
    assert_error(refresh, 401, "invalid_token")


@pytest.mark.parametrize(
    "token",
    [
        "garbage",
        "a.b.c",
        "' OR 1=1 --",
        "'; DROP TABLE users; --",
        "pk_' OR '1'='1",
        "pk_",
        "x" * 10_000,
        "pk_" + "x" * 10_000,
        "eyJ" + "A" * 5000,
    ],
)
async def test_garbage_tokens_are_401_never_500(client: httpx.AsyncClient, token: str) -> None:
    assert_error(await _me(client, f"Bearer {token}"), 401, "invalid_token")
