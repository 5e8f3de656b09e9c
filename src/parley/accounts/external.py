"""Bearer JWTs from external issuers (Better Auth's JWT plugin, any OpenID Connect provider):
`ExternalIssuers` tells whether a token names a configured issuer and verifies it against that
issuer's public keys (its JWKS), kept in memory by `IssuerKeys`.

A token is checked for its signature by a key of its issuer's JWKS, under an algorithm pinned for
that issuer (never `none` or HMAC: see `parley.accounts.issuer_config`), for `iss` (exactly the
issuer), `aud` (one of the configured audiences), `exp` (required) and `nbf` (when present), within
`AUTH_CLOCK_SKEW_SECONDS`. Header fields that point at keys elsewhere (`jku`, `x5u`, `jwk`) are
ignored: keys come from the configured URL only. Every refusal is the same 401 `invalid_token`; the
reason is logged, not answered.

Keys are fetched with a bounded time and size, on the event loop without blocking it, and kept for
`AUTH_JWKS_CACHE_SECONDS` (then refreshed in the background while the old ones keep serving). A
token whose `kid` is unknown makes one fetch, and never more than one per issuer in
`AUTH_JWKS_COOLDOWN_SECONDS`: a flood of made-up `kid`s costs the issuer one request. When a fetch
fails, the keys fetched before keep working; with none, every token of that issuer is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import jwt

from parley.core.errors import InvalidToken

if TYPE_CHECKING:
    from parley.accounts.issuer_config import IssuerConfig
    from parley.settings import Settings

logger = logging.getLogger(__name__)

MAX_JWKS_BYTES = 256 * 1024
MAX_JWKS_KEYS = 100
# Each read or connect, and the whole fetch: a slow JWKS holds a token's first request this long.
FETCH_TIMEOUT = httpx.Timeout(5.0, connect=3.0)
FETCH_DEADLINE_SECONDS = 10.0
MAX_SUBJECT_CHARS = 255
MAX_EMAIL_CHARS = 320
MAX_NAME_CHARS = 100
_KEY_ERRORS = (jwt.PyJWTError, ValueError, TypeError, KeyError, AttributeError)

KeyIndex = dict[tuple[str | None, str], Any]


class _Unusable(Exception):
    """The JWKS answer cannot be used (status, size, shape)."""


@dataclass(frozen=True, slots=True)
class ExternalClaims:
    """The checked claims of an external token: who (`issuer`, `subject`), the profile the token
    offers (`email`, lower-cased, and `name`, when present and sensible) and its expiry."""

    issuer: str
    subject: str
    email: str | None
    name: str | None
    expires_at: datetime


def parse_jwks(document: object, algorithms: tuple[str, ...]) -> KeyIndex:
    """The signing keys of a JWKS document, by `(kid, algorithm)` for each pinned algorithm the
    key can verify; symmetric keys, encryption keys and keys that do not parse are skipped.

    Raises:
        _Unusable: the document is not a JWKS.
    """
    if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
        raise _Unusable("not a JWKS (no `keys` list)")
    entries = document["keys"]
    if len(entries) > MAX_JWKS_KEYS:
        raise _Unusable(f"more than {MAX_JWKS_KEYS} keys")
    index: KeyIndex = {}
    for entry in entries:
        if not isinstance(entry, Mapping) or entry.get("kty") in (None, "oct"):
            continue  # a shared secret in a public key set is never a signing key of ours
        if entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        if kid is not None and not isinstance(kid, str):
            continue
        declared = entry.get("alg")
        for algorithm in algorithms:
            if declared is not None and declared != algorithm:
                continue
            try:
                index[(kid, algorithm)] = jwt.PyJWK(dict(entry), algorithm=algorithm).key
            except _KEY_ERRORS:
                continue  # this key is not of this algorithm's type
    return index


class IssuerKeys:
    """One issuer's public keys, fetched from its JWKS and kept (see the module's docstring).

    Args:
        config: the issuer.
        http: the client keys are fetched with.
        cache_seconds: how long fetched keys serve before they are refreshed.
        cooldown_seconds: the least time between two fetches.
    """

    def __init__(
        self,
        config: IssuerConfig,
        http: httpx.AsyncClient,
        *,
        cache_seconds: float,
        cooldown_seconds: float,
    ) -> None:
        self.config = config
        self.http = http
        self.cache_seconds = cache_seconds
        self.cooldown_seconds = cooldown_seconds
        self._keys: KeyIndex = {}
        self._fetched_at: float | None = None  # the last fetch that succeeded (monotonic)
        self._attempted_at: float | None = None  # the last fetch tried
        self._lock = asyncio.Lock()
        self._refresh: asyncio.Task[None] | None = None

    def _find(self, kid: str | None, algorithm: str) -> Any:
        if kid is not None:
            return self._keys.get((kid, algorithm))
        # No `kid`: only an issuer with a single key of this algorithm is unambiguous.
        candidates = [key for (_, alg), key in self._keys.items() if alg == algorithm]
        return candidates[0] if len(candidates) == 1 else None

    def _may_fetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self.cooldown_seconds

    async def key(self, kid: str | None, algorithm: str) -> Any:
        """The key that verifies a token with this `kid` and algorithm, or None: fetched first
        when unknown (unless the cool-down forbids), refreshed in the background when old."""
        now = time.monotonic()
        found = self._find(kid, algorithm)
        if found is not None:
            if (
                self._fetched_at is not None
                and now - self._fetched_at >= self.cache_seconds
                and self._may_fetch(now)
                and (self._refresh is None or self._refresh.done())
            ):
                # Off the request: the old keys serve while the new ones are fetched.
                self._refresh = asyncio.get_running_loop().create_task(
                    self.fetch(), name="jwks-refresh", context=contextvars.Context()
                )
            return found
        # A fetch in progress (another request's) is waited for and its keys used, even within
        # the cool-down it started.
        if self._may_fetch(now) or self._lock.locked():
            await self.fetch()
            found = self._find(kid, algorithm)
        return found

    async def fetch(self) -> None:
        """Fetch the JWKS, unless another fetch ran within the cool-down (one at a time: those
        who wait for a fetch in progress use its result). A failure keeps the keys there are."""
        async with self._lock:
            if not self._may_fetch(time.monotonic()):
                return
            self._attempted_at = time.monotonic()
            try:
                async with asyncio.timeout(FETCH_DEADLINE_SECONDS):
                    document = await self._download()
                keys = parse_jwks(document, self.config.algorithms)
            except (httpx.HTTPError, TimeoutError, ValueError, _Unusable) as exc:
                logger.warning(
                    "could not fetch the keys of issuer %s from %s (%s: %s); %s",
                    self.config.issuer,
                    self.config.jwks_url,
                    exc.__class__.__name__,
                    exc,
                    "keeping the keys fetched before" if self._keys else "no key to verify with",
                )
                return
            if not keys:
                logger.warning(
                    "the JWKS of issuer %s has no key for %s",
                    self.config.issuer,
                    ", ".join(self.config.algorithms),
                )
            self._keys = keys
            self._fetched_at = time.monotonic()

    async def _download(self) -> object:
        async with self.http.stream(
            "GET", self.config.jwks_url, headers={"Accept": "application/json"}
        ) as response:
            if response.status_code != 200:
                raise _Unusable(f"status {response.status_code}")
            declared = response.headers.get("content-length")
            if declared is not None and declared.isdigit() and int(declared) > MAX_JWKS_BYTES:
                raise _Unusable("the key set is too large")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise _Unusable("the key set is too large")
        return json.loads(bytes(body))

    def forget(self) -> None:
        """Drop the keys and the cool-down (tests; an operator's reload would do the same)."""
        self._keys = {}
        self._fetched_at = self._attempted_at = None

    async def aclose(self) -> None:
        """Stop a background refresh in progress."""
        if self._refresh is not None and not self._refresh.done():
            self._refresh.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresh


def _unverified_issuer(token: str) -> str | None:
    """The `iss` a token claims, before anything about it is checked (None: not a JWT with a
    text `iss`)."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    issuer = claims.get("iss")
    return issuer if isinstance(issuer, str) else None


def _text_claim(claims: Mapping[str, Any], name: str, limit: int) -> str | None:
    value = claims.get(name)
    if not isinstance(value, str):
        return None
    value = " ".join(value.split())
    return value[:limit] if value else None


def _email_claim(claims: Mapping[str, Any]) -> str | None:
    value = claims.get("email")
    if not isinstance(value, str):
        return None
    email = value.strip().lower()
    local, at, domain = email.partition("@")
    sensible = (
        at
        and local
        and "." in domain
        and "@" not in domain
        and len(email) <= MAX_EMAIL_CHARS
        and email.isprintable()
        and not any(c.isspace() for c in email)
    )
    return email if sensible else None


class ExternalIssuers:
    """The configured external issuers and their keys (an app's, on its runtime).

    Args:
        issuers: the checked issuer configurations.
        cache_seconds: how long fetched keys serve.
        cooldown_seconds: the least time between two fetches of one issuer's keys.
        clock_skew_seconds: how far `exp` and `nbf` may be off.
        http: the client keys are fetched with (made, and closed by `aclose`, when omitted).
    """

    def __init__(
        self,
        issuers: tuple[IssuerConfig, ...],
        *,
        cache_seconds: float,
        cooldown_seconds: float,
        clock_skew_seconds: float,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.clock_skew_seconds = clock_skew_seconds
        # A client only when there is an issuer to fetch keys from (closed by `aclose`).
        self._owns_http = http is None and bool(issuers)
        self._http = http
        self.issuers: dict[str, IssuerKeys] = {}
        if not issuers:
            return
        if http is None:
            http = self._http = httpx.AsyncClient(
                timeout=FETCH_TIMEOUT,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=10, max_keepalive_connections=2),
            )
        for config in issuers:
            self.issuers[config.issuer] = IssuerKeys(
                config, http, cache_seconds=cache_seconds, cooldown_seconds=cooldown_seconds
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> ExternalIssuers:
        """The issuers of `AUTH_ISSUER` and `AUTH_ISSUERS_FILE`, with the settings' timings."""
        return cls(
            settings.external_issuers,
            cache_seconds=settings.auth_jwks_cache_seconds,
            cooldown_seconds=settings.auth_jwks_cooldown_seconds,
            clock_skew_seconds=settings.auth_clock_skew_seconds,
        )

    @property
    def enabled(self) -> bool:
        """Whether any issuer is configured."""
        return bool(self.issuers)

    def issuer_of(self, token: str) -> IssuerKeys | None:
        """The configured issuer a token claims to come from (unverified), or None."""
        if not self.issuers:
            return None
        issuer = _unverified_issuer(token)
        return self.issuers.get(issuer) if issuer is not None else None

    async def verify(self, keys: IssuerKeys, token: str) -> ExternalClaims:
        """The checked claims of a token of this issuer.

        Raises:
            InvalidToken: the token is not one this issuer signed, for this audience, now.
        """
        config = keys.config
        try:
            header = jwt.get_unverified_header(token)
            algorithm = header.get("alg")
            kid = header.get("kid")
            if algorithm not in config.algorithms:
                raise _Refused(f"algorithm {algorithm!r} is not pinned for this issuer")
            if kid is not None and not isinstance(kid, str):
                raise _Refused("kid is not text")
            if "crit" in header:
                raise _Refused("critical header extensions are not understood")
            key = await keys.key(kid, algorithm)
            if key is None:
                raise _Refused(f"no key {kid!r} for {algorithm}")
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                issuer=config.issuer,
                audience=list(config.audience),
                leeway=self.clock_skew_seconds,
                options={"require": ["iss", "sub", "aud", "exp"]},
            )
            subject = claims["sub"]
            if not isinstance(subject, str) or not 0 < len(subject) <= MAX_SUBJECT_CHARS:
                raise _Refused("sub is empty or too long")
            expires_at = datetime.fromtimestamp(float(claims["exp"]), UTC)
        except (_Refused, *_KEY_ERRORS, OverflowError, OSError) as exc:
            logger.info("refused a token of issuer %s: %s", config.issuer, exc)
            raise InvalidToken() from exc
        return ExternalClaims(
            issuer=config.issuer,
            subject=subject,
            email=_email_claim(claims),
            name=_text_claim(claims, "name", MAX_NAME_CHARS)
            or _text_claim(claims, "preferred_username", MAX_NAME_CHARS),
            expires_at=expires_at,
        )

    def forget_keys(self) -> None:
        """Drop every issuer's keys and cool-down."""
        for keys in self.issuers.values():
            keys.forget()

    async def aclose(self) -> None:
        """Stop background refreshes and close the HTTP client."""
        for keys in self.issuers.values():
            await keys.aclose()
        if self._owns_http and self._http is not None:
            await self._http.aclose()


class _Refused(Exception):
    """Why a token was refused (logged, never answered)."""
