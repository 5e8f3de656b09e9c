"""The credentials of Parley's authorization server: access tokens for `/mcp`, and the opaque
secrets behind authorization codes, refresh tokens and client secrets.

An access token is a JWT (HS256) with `type` `mcp_access` and `aud` the `/mcp` resource it was
issued for (RFC 8707), signed with a key derived from `JWT_SECRET` for this use alone. The REST API
and `/v1` check Parley's access tokens with the plain key and `type` `access`, so an MCP token is
refused there twice over; `/mcp` checks the audience against its own URL and, on every request,
that the token's grant is still live, so a revoked connection stops at once.

Codes, refresh tokens and client secrets are 256-bit random strings, stored as SHA-256 hashes
(`parley.core.security.hash_secret`): fast hashes suit secrets that cannot be guessed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from starlette.requests import Request

from parley.core.db import utcnow
from parley.core.errors import InvalidToken
from parley.core.security import JWT_ALGORITHM, JWT_ISSUER

ACCESS_TOKEN_TYPE = "mcp_access"
CODE_PREFIX = "pac_"
REFRESH_TOKEN_PREFIX = "prt_"
CLIENT_SECRET_PREFIX = "pcs_"
MCP_PATH = "/mcp"
PROTECTED_RESOURCE_METADATA_PATH = "/.well-known/oauth-protected-resource"
MAX_SECRET_CHARS = 256
MAX_SCOPE_CHARS = 1000


def access_key(jwt_key: str) -> str:
    """The key MCP access tokens are signed with: derived from the app's JWT key, so that no
    other Parley token verifies as one, nor one of them as another Parley token."""
    return hmac.new(jwt_key.encode(), b"parley-oauth-mcp-access", hashlib.sha256).hexdigest()


def new_secret(prefix: str) -> str:
    """A new opaque secret (256 bits) with a prefix that tells what it is."""
    return prefix + secrets.token_urlsafe(32)


def base_url(request: Request) -> str:
    """The server's own origin (`scheme://host[:port]`), as this request reached it: the scheme a
    trusted proxy reported (uvicorn's `--forwarded-allow-ips`) and the `Host` header."""
    return f"{request.url.scheme}://{request.url.netloc}"


def resource_url(request: Request) -> str:
    """The protected resource, `<base>/mcp`: the audience of every MCP access token."""
    return base_url(request) + MCP_PATH


def resource_metadata_url(request: Request) -> str:
    """Where `/mcp`'s protected-resource metadata is (RFC 9728 section 3.1)."""
    return base_url(request) + PROTECTED_RESOURCE_METADATA_PATH + MCP_PATH


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """The checked claims of an MCP access token."""

    user_id: uuid.UUID
    grant_id: uuid.UUID
    client_id: str
    resource: str
    scope: str | None
    expires_at: datetime


def encode_access_token(
    jwt_key: str,
    *,
    user_id: uuid.UUID,
    grant_id: uuid.UUID,
    client_id: str,
    resource: str,
    scope: str | None,
    ttl_seconds: int,
) -> tuple[str, datetime]:
    """Sign an access token of a grant; returns it with its expiry."""
    now = utcnow()
    expires = now + timedelta(seconds=ttl_seconds)
    claims: dict[str, Any] = {
        "iss": JWT_ISSUER,
        "sub": str(user_id),
        "aud": resource,
        "jti": str(uuid.uuid4()),
        "type": ACCESS_TOKEN_TYPE,
        "gid": str(grant_id),
        "client_id": client_id,
        "iat": int(now.timestamp()),
        "exp": int(expires.timestamp()),
    }
    if scope:
        claims["scope"] = scope
    return jwt.encode(claims, access_key(jwt_key), algorithm=JWT_ALGORITHM), expires


def looks_like_access_token(token: str) -> bool:
    """Whether a bearer token claims to be an MCP access token (unverified: it only routes the
    token to `decode_access_token`, which decides)."""
    if token.count(".") != 2:
        return False
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return False
    return isinstance(claims, dict) and claims.get("type") == ACCESS_TOKEN_TYPE


def decode_access_token(jwt_key: str, token: str, *, resource: str) -> AccessClaims:
    """Verify an MCP access token's signature, issuer, times, type and audience (`resource`).

    Raises:
        InvalidToken: for any token that is not a valid, unexpired MCP token for `resource`.
    """
    try:
        claims = jwt.decode(
            token,
            access_key(jwt_key),
            algorithms=[JWT_ALGORITHM],
            issuer=JWT_ISSUER,
            audience=resource,
            options={"require": ["iss", "sub", "aud", "jti", "type", "gid", "iat", "exp"]},
        )
        if claims["type"] != ACCESS_TOKEN_TYPE:
            raise InvalidToken()
        scope = claims.get("scope")
        return AccessClaims(
            user_id=uuid.UUID(str(claims["sub"])),
            grant_id=uuid.UUID(str(claims["gid"])),
            client_id=str(claims.get("client_id", "")),
            resource=resource,
            scope=scope if isinstance(scope, str) else None,
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
        )
    except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
        raise InvalidToken() from exc
