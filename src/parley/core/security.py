"""Passwords (argon2id through pwdlib, hashed off the event loop), JWTs (PyJWT, HS256 pinned) and
the secrets behind API keys and refresh tokens.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

import anyio.to_thread
import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from parley.core.db import utcnow
from parley.core.errors import InvalidToken

JWT_ALGORITHM = "HS256"
JWT_ISSUER = "parley"
API_KEY_PREFIX = "pk_"
API_KEY_LOOKUP_CHARS = 12

TokenType = Literal["access", "refresh"]

_password_hash = PasswordHash((Argon2Hasher(),))


async def hash_password(password: str) -> str:
    """An argon2id hash of `password`, computed in a worker thread."""
    return await anyio.to_thread.run_sync(_password_hash.hash, password)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _password_hash.hash(secrets.token_urlsafe(16))


def _verify_against_dummy(password: str) -> None:
    # In the worker thread: the dummy hash is made here if the start-up warm-up has not yet.
    _password_hash.verify(password, _dummy_hash())


async def verify_password(password: str, password_hash: str | None) -> bool:
    """Whether `password` matches `password_hash`, in a worker thread.

    With no hash (unknown email, guest) it verifies against a dummy hash anyway and answers False,
    so the time taken does not tell whether an account exists.
    """
    if password_hash is None:
        await anyio.to_thread.run_sync(_verify_against_dummy, password)
        return False
    return await anyio.to_thread.run_sync(_password_hash.verify, password, password_hash)


def warm_up_password_hashing() -> None:
    """Compute the dummy hash now rather than on the first login (the app's background warm-up
    calls it, in a worker thread)."""
    _dummy_hash()


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """The checked claims of a Parley JWT."""

    subject: uuid.UUID
    token_id: uuid.UUID
    token_type: TokenType
    issued_at: datetime
    expires_at: datetime
    family_id: uuid.UUID | None = None


def encode_token(
    key: str,
    *,
    subject: uuid.UUID,
    token_type: TokenType,
    ttl_seconds: int,
    token_id: uuid.UUID,
    family_id: uuid.UUID | None = None,
    now: datetime | None = None,
) -> tuple[str, datetime]:
    """Sign a token; returns it with its expiry."""
    issued = now or utcnow()
    expires = issued + timedelta(seconds=ttl_seconds)
    claims: dict[str, Any] = {
        "iss": JWT_ISSUER,
        "sub": str(subject),
        "jti": str(token_id),
        "type": token_type,
        "iat": int(issued.timestamp()),
        "exp": int(expires.timestamp()),
    }
    if family_id is not None:
        claims["fam"] = str(family_id)
    return jwt.encode(claims, key, algorithm=JWT_ALGORITHM), expires


def decode_token(key: str, token: str, *, expected_type: TokenType) -> TokenClaims:
    """Verify a token's signature, algorithm, issuer, times and type.

    Raises:
        InvalidToken: for any token that is not a valid, unexpired Parley token of that type.
    """
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=[JWT_ALGORITHM],
            issuer=JWT_ISSUER,
            options={"require": ["iss", "sub", "jti", "type", "iat", "exp"]},
        )
        if claims["type"] != expected_type:
            raise InvalidToken()
        family = claims.get("fam")
        return TokenClaims(
            subject=uuid.UUID(str(claims["sub"])),
            token_id=uuid.UUID(str(claims["jti"])),
            token_type=expected_type,
            issued_at=datetime.fromtimestamp(int(claims["iat"]), utcnow().tzinfo),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), utcnow().tzinfo),
            family_id=uuid.UUID(str(family)) if family else None,
        )
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
        raise InvalidToken() from exc


def looks_like_api_key(token: str) -> bool:
    """Whether a bearer token is an API key rather than a JWT."""
    return token.startswith(API_KEY_PREFIX)


def generate_api_key() -> tuple[str, str, str]:
    """A new API key: `(secret, lookup prefix, hash)`.

    The prefix (`pk_` and 12 characters) is stored to find the key; only a SHA-256 hash of the
    whole key is kept. A fast hash is right here: the secret has 256 bits of entropy, so it cannot
    be guessed, and the key is checked on every request.
    """
    secret = API_KEY_PREFIX + secrets.token_urlsafe(32)
    return secret, api_key_lookup_prefix(secret), hash_secret(secret)


def api_key_lookup_prefix(secret: str) -> str:
    """The part of an API key stored in clear to find its row."""
    return secret[: len(API_KEY_PREFIX) + API_KEY_LOOKUP_CHARS]


def hash_secret(secret: str) -> str:
    """SHA-256 hex digest of a high-entropy secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secrets_match(secret: str, expected_hash: str) -> bool:
    """Constant-time comparison of a secret with a stored hash."""
    return secrets.compare_digest(hash_secret(secret), expected_hash)
