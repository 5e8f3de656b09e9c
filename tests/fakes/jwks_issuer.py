"""Fake external identity providers: issuers that sign JWTs with keys of their own (Ed25519 or
RSA, generated per issuer) and serve the public halves as a JWKS, as Better Auth's JWT plugin
(`<base>/api/auth/jwks`) and OpenID Connect providers do, from a real HTTP server on loopback.

`JwksServer` serves every issuer it holds at `/<name>/jwks`, counts the requests each one gets,
answers `fail_with` instead when told to (an issuer whose JWKS is down), and waits
`delay_seconds` first when told to (a slow one). A `FakeIssuer` signs tokens (`token(...)`) with
any of its keys, rotates (a new key served beside the old ones: the grace period) and retires
keys.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.loopback import ServerThread, serve


@dataclass
class SigningKey:
    """A private key, its algorithm and its `kid`."""

    kid: str
    algorithm: str
    private: Any

    @property
    def public_jwk(self) -> dict[str, Any]:
        """The public half as a JWK, with `kid`, `alg` and `use`."""
        codec = OKPAlgorithm if self.algorithm == "EdDSA" else RSAAlgorithm
        jwk: dict[str, Any] = codec.to_jwk(self.private.public_key(), as_dict=True)  # type: ignore[attr-defined]
        return {**jwk, "kid": self.kid, "alg": self.algorithm, "use": "sig"}


def new_key(algorithm: str = "EdDSA", kid: str | None = None) -> SigningKey:
    """A freshly generated key: Ed25519 for `EdDSA`, RSA 2048 for `RS*`/`PS*`."""
    private: Any = (
        ed25519.Ed25519PrivateKey.generate()
        if algorithm == "EdDSA"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    return SigningKey(kid or uuid.uuid4().hex[:16], algorithm, private)


@dataclass
class FakeIssuer:
    """One issuer: `issuer` (its `iss`), `audience` (its `aud`), the keys it signs with and the
    ones its JWKS serves."""

    name: str
    issuer: str
    audience: str
    keys: dict[str, SigningKey] = field(default_factory=dict)
    served: list[str] = field(default_factory=list)  # the kids the JWKS lists, in order
    requests: int = 0
    fail_with: int | None = None
    delay_seconds: float = 0.0  # how long the JWKS takes to answer (a slow provider)

    def add_key(self, algorithm: str = "EdDSA", *, served: bool = True) -> SigningKey:
        """A new key; served by the JWKS unless `served=False` (a key nobody published)."""
        key = new_key(algorithm)
        self.keys[key.kid] = key
        if served:
            self.served.append(key.kid)
        return key

    def retire(self, kid: str) -> None:
        """Stop serving a key (the end of its grace period)."""
        self.served.remove(kid)

    @property
    def current(self) -> SigningKey:
        """The newest served key: what the issuer signs with."""
        return self.keys[self.served[-1]]

    @property
    def jwks(self) -> dict[str, Any]:
        """The JWKS document."""
        return {"keys": [self.keys[kid].public_jwk for kid in self.served]}

    def claims(self, subject: str, **overrides: Any) -> dict[str, Any]:
        """Better Auth's claims for a user: `iss` = `aud` = the base URL, `exp` in 15 minutes,
        the user's `email` and `name` (`overrides` replace or add; a None value drops one)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "exp": now + 900,
            "email": f"{subject}@idp.example",
            "name": f"Person {subject}",
        }
        claims.update(overrides)
        return {name: value for name, value in claims.items() if value is not None}

    def token(
        self,
        subject: str,
        *,
        key: SigningKey | None = None,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A JWT for `subject` signed by `key` (default: the current key), its `kid` in the
        header."""
        key = key or self.current
        return jwt.encode(
            self.claims(subject, **claims),
            key.private,
            algorithm=key.algorithm,
            headers={"kid": key.kid, **(headers or {})},
        )

    def reset(self) -> None:
        """Back to one fresh key of the issuer's first algorithm, no requests, answering."""
        algorithm = self.keys[self.served[0]].algorithm if self.served else "EdDSA"
        self.keys.clear()
        self.served.clear()
        self.add_key(algorithm)
        self.requests = 0
        self.fail_with = None
        self.delay_seconds = 0.0


@dataclass
class JwksServer:
    """Issuers' JWKS endpoints on one loopback server (`url`)."""

    url: str
    issuers: dict[str, FakeIssuer]

    def jwks_url(self, name: str) -> str:
        """Where issuer `name` serves its keys."""
        return f"{self.url}/{name}/jwks"


@contextmanager
def jwks_server(*issuers: tuple[str, str, str, str]) -> Iterator[JwksServer]:
    """Serve issuers given as `(name, issuer, audience, algorithm)`; stopped on exit."""
    lock = threading.Lock()
    held = {
        name: FakeIssuer(name, issuer, audience) for name, issuer, audience, _algorithm in issuers
    }
    for name, _issuer, _audience, algorithm in issuers:
        held[name].add_key(algorithm)

    async def jwks(request: Request) -> Response:
        issuer = held.get(request.path_params["name"])
        if issuer is None:
            return Response(status_code=404)
        with lock:
            issuer.requests += 1
        if issuer.delay_seconds:
            await asyncio.sleep(issuer.delay_seconds)
        if issuer.fail_with is not None:
            return Response("unavailable", status_code=issuer.fail_with)
        return JSONResponse(json.loads(json.dumps(issuer.jwks)))

    app = Starlette(routes=[Route("/{name}/jwks", jwks)])
    running: ServerThread = serve(app)
    try:
        yield JwksServer(running.url, held)
    finally:
        running.stop()
