"""The external issuers Parley accepts bearer JWTs from (`AUTH_ISSUER`, `AUTH_JWKS_URL`,
`AUTH_AUDIENCE`, `AUTH_ALGORITHMS`, or several in `AUTH_ISSUERS_FILE`), checked when the settings
are read so that a bad configuration stops the start with a clear reason.

Only asymmetric algorithms may be pinned: an issuer's keys come from a public JWKS, and an HMAC
algorithm would turn a public key into a shared secret (and `none` signs nothing).
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

# The JWS algorithms an issuer may be pinned to (RFC 7518, RFC 8037): signatures by a private key
# whose public half the JWKS serves.
ASYMMETRIC_ALGORITHMS = frozenset(
    {
        "EdDSA",
        "RS256",
        "RS384",
        "RS512",
        "PS256",
        "PS384",
        "PS512",
        "ES256",
        "ES384",
        "ES512",
    }
)
# Better Auth's JWT plugin signs EdDSA (Ed25519) by default; RS256 is the one algorithm every
# OpenID Connect provider must support, and what most sign with.
DEFAULT_ALGORITHMS = ("EdDSA", "RS256")
PARLEY_ISSUER = "parley"  # Parley's own access tokens (parley.core.security.JWT_ISSUER)
MAX_ISSUERS = 20
MAX_ISSUER_CHARS = 512


class IssuerConfigError(ValueError):
    """An external issuer's configuration cannot be used."""


def _as_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class IssuerConfig(BaseModel):
    """One issuer: who signs (`issuer`, the exact `iss`), where its public keys are (`jwks_url`),
    who its tokens must be for (`audience`: one of these is the `aud`; default: the issuer,
    as Better Auth sets it) and the algorithms its tokens may use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = Field(min_length=1, max_length=MAX_ISSUER_CHARS)
    jwks_url: str = Field(min_length=1, max_length=2048)
    audience: Annotated[tuple[str, ...], BeforeValidator(_as_list)] = ()
    algorithms: Annotated[tuple[str, ...], BeforeValidator(_as_list)] = DEFAULT_ALGORITHMS

    def checked(self, *, production: bool) -> IssuerConfig:
        """This issuer with its audience filled in, or IssuerConfigError saying what is wrong."""
        where = f"issuer {self.issuer!r}"
        if self.issuer != self.issuer.strip() or any(c.isspace() for c in self.issuer):
            raise IssuerConfigError(f"{where}: the issuer has spaces in it")
        if self.issuer == PARLEY_ISSUER:
            raise IssuerConfigError(f"{where}: {PARLEY_ISSUER!r} is Parley's own issuer")
        url = urlsplit(self.jwks_url)
        if url.scheme not in ("https", "http") or not url.hostname:
            raise IssuerConfigError(f"{where}: jwks_url must be an http(s) URL")
        if url.scheme == "http" and production and not _is_loopback(url.hostname):
            raise IssuerConfigError(
                f"{where}: jwks_url must use https in production (http only on loopback)"
            )
        if not self.algorithms:
            raise IssuerConfigError(f"{where}: no algorithms")
        refused = sorted(set(self.algorithms) - ASYMMETRIC_ALGORITHMS)
        if refused:
            raise IssuerConfigError(
                f"{where}: algorithms {', '.join(refused)} are not allowed; use one of "
                f"{', '.join(sorted(ASYMMETRIC_ALGORITHMS))}"
            )
        audience = self.audience or (self.issuer,)
        if any(not item or len(item) > MAX_ISSUER_CHARS for item in audience):
            raise IssuerConfigError(f"{where}: an audience is empty or too long")
        return self.model_copy(update={"audience": audience})


def load_issuers_file(path: Path) -> list[IssuerConfig]:
    """The issuers listed in a JSON or YAML file (a list of `{issuer, jwks_url, audience?,
    algorithms?}`; `algorithms` defaults to `EdDSA, RS256`).

    Raises:
        IssuerConfigError: the file cannot be read or parsed, or an entry is invalid.
    """
    try:
        text = path.read_text(encoding="utf-8")
        raw: Any = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except OSError as exc:
        raise IssuerConfigError(f"cannot read AUTH_ISSUERS_FILE {path}: {exc}") from exc
    except (ValueError, yaml.YAMLError) as exc:
        raise IssuerConfigError(f"AUTH_ISSUERS_FILE {path} is not valid: {exc}") from exc
    if isinstance(raw, dict) and "issuers" in raw:
        raw = raw["issuers"]
    if not isinstance(raw, list):
        raise IssuerConfigError(f"AUTH_ISSUERS_FILE {path} must hold a list of issuers")
    issuers = []
    for number, entry in enumerate(raw, start=1):
        try:
            issuers.append(IssuerConfig.model_validate(entry))
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first.get("loc", ())) or "entry"
            raise IssuerConfigError(
                f"AUTH_ISSUERS_FILE {path}, issuer {number}: {field}: {first.get('msg')}"
            ) from exc
    return issuers


def resolve_issuers(
    *,
    issuer: str | None,
    jwks_url: str | None,
    audience: list[str],
    algorithms: list[str],
    issuers_file: Path | None,
    production: bool,
) -> tuple[IssuerConfig, ...]:
    """Every configured issuer, checked: the one of `AUTH_ISSUER` and those of the file.

    Raises:
        IssuerConfigError: a setting is missing, invalid, or an issuer is configured twice.
    """
    issuers: list[IssuerConfig] = []
    if issuer or jwks_url:
        if not (issuer and jwks_url):
            raise IssuerConfigError("AUTH_ISSUER and AUTH_JWKS_URL must be set together")
        try:
            issuers.append(
                IssuerConfig(
                    issuer=issuer,
                    jwks_url=jwks_url,
                    audience=tuple(audience),
                    algorithms=tuple(algorithms),
                )
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(part) for part in first.get("loc", ())) or "issuer"
            raise IssuerConfigError(f"AUTH_{field.upper()}: {first.get('msg')}") from exc
    elif audience:
        raise IssuerConfigError("AUTH_AUDIENCE needs AUTH_ISSUER and AUTH_JWKS_URL")
    if issuers_file is not None:
        issuers.extend(load_issuers_file(issuers_file))
    if len(issuers) > MAX_ISSUERS:
        raise IssuerConfigError(f"at most {MAX_ISSUERS} issuers may be configured")
    checked = tuple(entry.checked(production=production) for entry in issuers)
    names = [entry.issuer for entry in checked]
    if len(set(names)) != len(names):
        raise IssuerConfigError("an issuer is configured twice")
    return checked
