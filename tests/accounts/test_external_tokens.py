"""Bearer JWTs of external issuers (CONTRACT.md section 12): accepted on `/api`, `/v1` and `/mcp`
like Parley's own tokens, the user found or made by `(iss, sub)`, and every bad token refused
with 401 `invalid_token`.

Three issuers are configured: A like Better Auth (EdDSA, `iss` = `aud`, through `AUTH_ISSUER`),
B an RS256 provider with an audience of its own, and C whose JWKS nobody serves (both through
`AUTH_ISSUERS_FILE`). A and B are fakes on a loopback JWKS server (`tests.fakes.jwks_issuer`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from sqlalchemy import func, select

from parley.accounts import external
from parley.accounts.models import ExternalIdentity, User
from parley.settings import Settings
from tests.fakes.jwks_issuer import FakeIssuer, JwksServer, jwks_server, new_key
from tests.fakes.loopback import free_port
from tests.fixtures.accounts import UserFactory
from tests.fixtures.apps import running_app
from tests.fixtures.errors import assert_error
from tests.fixtures.mcp import mcp_client
from tests.fixtures.servers import LiveServer, start_live_server, stop_live_server
from tests.fixtures.settings import make_settings

ISSUER_A = "https://auth-a.example"
ISSUER_B = "https://idp-b.example"
ISSUER_C = "https://down-c.example"
AUDIENCE_B = "parley-api"
COOLDOWN_SECONDS = 1.0


@pytest.fixture(scope="module")
def jwks() -> Iterator[JwksServer]:
    with jwks_server(("a", ISSUER_A, ISSUER_A, "EdDSA"), ("b", ISSUER_B, AUDIENCE_B, "RS256")) as (
        server
    ):
        yield server


@pytest.fixture(scope="module")
def external_settings(
    jwks: JwksServer, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Settings:
    directory = tmp_path_factory.mktemp("external")
    issuers_file = directory / "issuers.json"
    issuers_file.write_text(
        json.dumps(
            [
                {
                    "issuer": ISSUER_B,
                    "jwks_url": jwks.jwks_url("b"),
                    "audience": AUDIENCE_B,
                    "algorithms": ["RS256"],
                },
                {"issuer": ISSUER_C, "jwks_url": f"http://127.0.0.1:{free_port()}/jwks"},
            ]
        ),
        encoding="utf-8",
    )
    return make_settings(
        database_url,
        directory,
        auth_issuer=ISSUER_A,
        auth_jwks_url=jwks.jwks_url("a"),
        auth_algorithms=["EdDSA"],
        auth_issuers_file=issuers_file,
        auth_jwks_cooldown_seconds=COOLDOWN_SECONDS,
    )


@pytest.fixture(scope="module")
async def external_app(
    external_settings: Settings,
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(external_settings) as running:
        yield running


@pytest.fixture
def http(external_app: tuple[FastAPI, httpx.AsyncClient], jwks: JwksServer) -> httpx.AsyncClient:
    """A client of the app, its issuers' keys forgotten and the fakes fresh."""
    app, client = external_app
    app.state.issuers.forget_keys()
    for issuer in jwks.issuers.values():
        issuer.reset()
    return client


@pytest.fixture
def issuer_a(jwks: JwksServer) -> FakeIssuer:
    return jwks.issuers["a"]


@pytest.fixture
def issuer_b(jwks: JwksServer) -> FakeIssuer:
    return jwks.issuers["b"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def subject() -> str:
    return f"user-{uuid.uuid4().hex[:12]}"


async def me(http: httpx.AsyncClient, token: str) -> httpx.Response:
    return await http.get("/api/users/me", headers=bearer(token))


async def assert_refused(http: httpx.AsyncClient, token: str) -> None:
    assert_error(await me(http, token), 401, "invalid_token")


async def identities(app: FastAPI, issuer: str, sub: str) -> list[ExternalIdentity]:
    async with app.state.database.sessionmaker() as session:
        rows = await session.execute(
            select(ExternalIdentity).where(
                ExternalIdentity.issuer == issuer, ExternalIdentity.subject == sub
            )
        )
        return list(rows.scalars())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        [_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), _b64(signature)]
    )


# -- accepted on every surface --------------------------------------------------------------------


async def test_a_better_auth_style_token_signs_in_on_api(
    http: httpx.AsyncClient, issuer_a: FakeIssuer
) -> None:
    sub = subject()
    response = await me(http, issuer_a.token(sub, name="Ada Lovelace", email="Ada@IdP.example"))
    assert response.status_code == 200, response.text
    user = response.json()["data"]
    assert user["email"] == "ada@idp.example"
    assert user["display_name"] == "Ada Lovelace"
    assert user["is_guest"] is False
    assert user["is_admin"] is False


async def test_an_rsa_token_works_on_v1(http: httpx.AsyncClient, issuer_b: FakeIssuer) -> None:
    response = await http.get("/v1/models", headers=bearer(issuer_b.token(subject())))
    assert response.status_code == 200, response.text
    assert response.json()["object"] == "list"


async def test_a_refused_token_on_v1_is_an_openai_error(
    http: httpx.AsyncClient, issuer_b: FakeIssuer
) -> None:
    response = await http.get(
        "/v1/models", headers=bearer(issuer_b.token(subject(), aud="someone-else"))
    )
    assert response.status_code == 401
    assert "error" in response.json()


@pytest.fixture(scope="module")
def external_server(external_settings: Settings) -> Iterator[LiveServer]:
    live = start_live_server(external_settings)
    try:
        yield live
    finally:
        stop_live_server(live)


async def test_a_token_works_on_mcp(
    external_server: LiveServer, jwks: JwksServer, http: httpx.AsyncClient
) -> None:
    issuer = jwks.issuers["a"]
    external_server.app.state.issuers.forget_keys()
    async with mcp_client(f"{external_server.url}/mcp", issuer.token(subject())) as session:
        tools = await session.list_tools()
        added = await session.call_tool("add_task", {"title": "From Better Auth"})
    assert "add_task" in {tool.name for tool in tools.tools}
    assert not added.is_error, added.content


# -- the user behind (iss, sub) ----------------------------------------------------------------


async def test_the_user_is_made_once_by_issuer_and_subject(
    http: httpx.AsyncClient,
    external_app: tuple[FastAPI, httpx.AsyncClient],
    issuer_a: FakeIssuer,
    issuer_b: FakeIssuer,
) -> None:
    app, _ = external_app
    sub = subject()
    first = (await me(http, issuer_a.token(sub))).json()["data"]
    again = (await me(http, issuer_a.token(sub, name="Renamed", jti="2"))).json()["data"]
    assert again["id"] == first["id"]
    assert again["display_name"] == first["display_name"] == f"Person {sub}"
    # The same `sub` at another issuer is another person.
    other = (await me(http, issuer_b.token(sub, email=None, name=None))).json()["data"]
    assert other["id"] != first["id"]
    assert other["email"] is None
    assert other["display_name"] == "User"
    [identity] = await identities(app, ISSUER_A, sub)
    assert str(identity.user_id) == first["id"]
    assert identity.email == f"{sub}@idp.example"


async def test_first_requests_at_once_make_one_user(
    http: httpx.AsyncClient, external_app: tuple[FastAPI, httpx.AsyncClient], issuer_a: FakeIssuer
) -> None:
    app, _ = external_app
    sub = subject()
    await me(http, issuer_a.token(subject()))  # the keys are fetched: only the user races
    tokens = [issuer_a.token(sub, jti=str(number)) for number in range(6)]
    responses = await asyncio.gather(*(me(http, token) for token in tokens))
    assert {response.status_code for response in responses} == {200}
    assert len({response.json()["data"]["id"] for response in responses}) == 1
    assert len(await identities(app, ISSUER_A, sub)) == 1
    async with app.state.database.sessionmaker() as session:
        count = await session.scalar(
            select(func.count()).select_from(User).where(User.email == f"{sub}@idp.example")
        )
    assert count == 1


async def test_requests_during_the_first_key_fetch_wait_for_it(
    http: httpx.AsyncClient, issuer_a: FakeIssuer
) -> None:
    # The keys are not fetched yet and the JWKS is slow: the requests that come while the first
    # one fetches use its keys (none is refused for being within the fetch's cool-down).
    issuer_a.delay_seconds = 0.5
    tokens = [issuer_a.token(subject()) for _ in range(10)]
    first = asyncio.create_task(me(http, tokens[0]))
    await asyncio.sleep(0.2)  # its fetch is under way
    responses = await asyncio.gather(first, *(me(http, token) for token in tokens[1:]))
    assert [response.status_code for response in responses] == [200] * 10
    assert issuer_a.requests == 1


async def test_an_email_a_local_account_has_is_not_linked(
    http: httpx.AsyncClient, make_user: UserFactory, issuer_a: FakeIssuer
) -> None:
    local = await make_user("owner@example.com")
    response = await me(http, issuer_a.token(subject(), email="Owner@Example.com"))
    assert response.status_code == 200, response.text
    external = response.json()["data"]
    assert external["id"] != local.id
    assert external["email"] is None
    mine = (await me(http, local.access_token)).json()["data"]
    assert mine["id"] == local.id
    assert mine["email"] == "owner@example.com"


async def test_a_deactivated_external_user_is_refused(
    http: httpx.AsyncClient, make_user: UserFactory, issuer_a: FakeIssuer
) -> None:
    admin = await make_user(admin=True)
    sub = subject()
    user = (await me(http, issuer_a.token(sub))).json()["data"]
    changed = await http.patch(
        f"/api/admin/users/{user['id']}", json={"is_active": False}, headers=admin.headers
    )
    assert changed.status_code == 200, changed.text
    await assert_refused(http, issuer_a.token(sub, jti="later"))


async def test_parleys_own_tokens_still_work(
    http: httpx.AsyncClient, make_user: UserFactory
) -> None:
    local = await make_user()
    assert (await me(http, local.access_token)).status_code == 200


# -- keys: rotation, unknown kids, cool-down, the JWKS down ------------------------------------


async def test_rotation_with_a_grace_period(http: httpx.AsyncClient, issuer_a: FakeIssuer) -> None:
    old = issuer_a.current
    assert (await me(http, issuer_a.token(subject()))).status_code == 200
    assert issuer_a.requests == 1
    new = issuer_a.add_key("EdDSA")  # served beside the old one
    await asyncio.sleep(COOLDOWN_SECONDS)
    assert (await me(http, issuer_a.token(subject(), key=new))).status_code == 200
    assert issuer_a.requests == 2  # the unknown kid made one fetch
    assert (await me(http, issuer_a.token(subject(), key=old))).status_code == 200
    assert (await me(http, issuer_a.token(subject(), key=new))).status_code == 200
    assert issuer_a.requests == 2  # both known now: no fetch
    issuer_a.retire(old.kid)
    await asyncio.sleep(COOLDOWN_SECONDS)
    newest = issuer_a.add_key("EdDSA")
    assert (await me(http, issuer_a.token(subject(), key=newest))).status_code == 200
    assert issuer_a.requests == 3
    await assert_refused(http, issuer_a.token(subject(), key=old))  # retired: gone with the fetch


async def test_a_flood_of_unknown_kids_makes_one_fetch(
    http: httpx.AsyncClient, issuer_a: FakeIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The keys' clock stands still (however slow the machine) until the test moves it on.
    now = [1_000.0]
    monkeypatch.setattr(external, "time", SimpleNamespace(monotonic=lambda: now[0]))
    assert (await me(http, issuer_a.token(subject()))).status_code == 200
    assert issuer_a.requests == 1
    strangers = [new_key("EdDSA") for _ in range(3)]
    tokens = [issuer_a.token(subject(), key=strangers[n % 3]) for n in range(30)]
    for response in await asyncio.gather(*(me(http, token) for token in tokens)):
        assert_error(response, 401, "invalid_token")
    assert issuer_a.requests == 1  # within the cool-down of the first fetch: none
    now[0] += COOLDOWN_SECONDS
    for response in await asyncio.gather(*(me(http, token) for token in tokens)):
        assert_error(response, 401, "invalid_token")
    assert issuer_a.requests == 2  # one fetch for the whole flood


async def test_a_cached_key_works_while_the_jwks_is_down(
    http: httpx.AsyncClient, external_app: tuple[FastAPI, httpx.AsyncClient], issuer_a: FakeIssuer
) -> None:
    app, _ = external_app
    assert (await me(http, issuer_a.token(subject()))).status_code == 200
    issuer_a.fail_with = 503
    assert (await me(http, issuer_a.token(subject()))).status_code == 200
    # With no key cached, a JWKS that fails refuses: never accepts.
    app.state.issuers.forget_keys()
    await assert_refused(http, issuer_a.token(subject()))
    assert issuer_a.requests == 2


async def test_an_unreachable_jwks_refuses(http: httpx.AsyncClient) -> None:
    stranger = FakeIssuer("c", ISSUER_C, ISSUER_C)
    stranger.add_key("EdDSA")
    await assert_refused(http, stranger.token(subject()))


async def test_the_caller_is_kept_until_the_token_expires(
    http: httpx.AsyncClient, external_app: tuple[FastAPI, httpx.AsyncClient], issuer_a: FakeIssuer
) -> None:
    app, _ = external_app
    token = issuer_a.token(subject())
    assert (await me(http, token)).status_code == 200
    app.state.issuers.forget_keys()
    issuer_a.fail_with = 503
    assert (await me(http, token)).status_code == 200  # from the caller cache: no key needed
    await assert_refused(http, issuer_a.token(subject()))


# -- refused tokens ----------------------------------------------------------------------------


async def test_times_are_checked_within_the_clock_skew(
    http: httpx.AsyncClient, issuer_a: FakeIssuer
) -> None:
    now = int(time.time())
    assert (await me(http, issuer_a.token(subject(), exp=now - 30))).status_code == 200
    await assert_refused(http, issuer_a.token(subject(), exp=now - 120))
    await assert_refused(http, issuer_a.token(subject(), nbf=now + 300))
    await assert_refused(http, issuer_a.token(subject(), exp=None))


async def test_issuer_and_audience_are_checked(
    http: httpx.AsyncClient, issuer_a: FakeIssuer
) -> None:
    await assert_refused(http, issuer_a.token(subject(), iss="https://elsewhere.example"))
    await assert_refused(http, issuer_a.token(subject(), aud="https://elsewhere.example"))
    await assert_refused(http, issuer_a.token(subject(), aud=None))
    await assert_refused(http, issuer_a.token(subject(), sub=None))
    await assert_refused(http, issuer_a.token("x" * 256))


async def test_a_token_of_one_issuer_with_anothers_iss_is_refused(
    http: httpx.AsyncClient, issuer_a: FakeIssuer, issuer_b: FakeIssuer
) -> None:
    rsa_of_a = issuer_a.add_key("RS256", served=False)
    forged = issuer_a.token(subject(), key=rsa_of_a, iss=ISSUER_B, aud=AUDIENCE_B)
    await assert_refused(http, forged)
    # And A's own key under B's name: B's JWKS has no such kid.
    await assert_refused(http, issuer_a.token(subject(), iss=ISSUER_B, aud=AUDIENCE_B))
    assert (await me(http, issuer_b.token(subject()))).status_code == 200


async def test_an_algorithm_the_issuer_is_not_pinned_to_is_refused(
    http: httpx.AsyncClient, issuer_a: FakeIssuer
) -> None:
    # A's JWKS serves an RSA key too, but A is pinned to EdDSA.
    rsa_key = issuer_a.add_key("RS256")
    await assert_refused(http, issuer_a.token(subject(), key=rsa_key))
    # A header naming another algorithm than the key's.
    ed = issuer_a.served[0]
    claims = issuer_a.claims(subject())
    await assert_refused(
        http, unsigned({"alg": "RS256", "kid": ed, "typ": "JWT"}, claims, b"x" * 64)
    )


async def test_alg_none_is_refused(http: httpx.AsyncClient, issuer_a: FakeIssuer) -> None:
    claims = issuer_a.claims(subject())
    await assert_refused(http, unsigned({"alg": "none", "typ": "JWT"}, claims))
    await assert_refused(
        http, unsigned({"alg": "none", "kid": issuer_a.current.kid, "typ": "JWT"}, claims)
    )


async def test_hs256_signed_with_the_public_key_is_refused(
    http: httpx.AsyncClient, issuer_b: FakeIssuer
) -> None:
    key = issuer_b.current
    public_pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = issuer_b.claims(subject())
    for secret in (public_pem, json.dumps(key.public_jwk).encode()):
        header = {"alg": "HS256", "kid": key.kid, "typ": "JWT"}
        signing_input = ".".join(
            [_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode())]
        )
        signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        await assert_refused(http, f"{signing_input}.{_b64(signature)}")


@pytest.mark.parametrize(
    "token",
    [
        "x" * 5000,
        "a.b.c",
        "not a jwt",
        "eyJhbGciOiJFZERTQSJ9.eyJpc3MiOiJodHRwczovL2F1dGgtYS5leGFtcGxlIn0",
        "eyJhbGciOiJFZERTQSJ9.eyJpc3MiOiJodHRwczovL2F1dGgtYS5leGFtcGxlIn0.AAAA",
        "éé.ü.ö",
    ],
    ids=["huge", "dots", "words", "two-parts", "bad-signature", "non-ascii"],
)
async def test_a_malformed_token_is_refused(http: httpx.AsyncClient, token: str) -> None:
    response = await http.get(
        "/api/users/me", headers={"Authorization": f"Bearer {token}".encode()}
    )
    assert_error(response, 401, "invalid_token")


async def test_a_huge_signed_token_is_refused(
    http: httpx.AsyncClient, issuer_a: FakeIssuer
) -> None:
    await assert_refused(http, issuer_a.token(subject(), padding="p" * 5000))


async def test_a_crit_header_is_refused(http: httpx.AsyncClient, issuer_a: FakeIssuer) -> None:
    token = issuer_a.token(subject(), headers={"crit": ["exp"]})
    await assert_refused(http, token)


# -- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"auth_issuer": ISSUER_A}, "AUTH_ISSUER and AUTH_JWKS_URL must be set together"),
        ({"auth_audience": ["x"]}, "AUTH_AUDIENCE needs AUTH_ISSUER"),
        (
            {
                "auth_issuer": ISSUER_A,
                "auth_jwks_url": "https://a/jwks",
                "auth_algorithms": ["HS256"],
            },
            "algorithms HS256 are not allowed",
        ),
        (
            {
                "auth_issuer": ISSUER_A,
                "auth_jwks_url": "https://a/jwks",
                "auth_algorithms": ["none"],
            },
            "algorithms none are not allowed",
        ),
        ({"auth_issuer": "parley", "auth_jwks_url": "https://a/jwks"}, "Parley's own issuer"),
        ({"auth_issuer": ISSUER_A, "auth_jwks_url": "ftp://a/jwks"}, "http(s) URL"),
        (
            {
                "auth_issuer": ISSUER_A,
                "auth_jwks_url": "http://idp.internal/jwks",
                "environment": "production",
                "jwt_secret": "s" * 40,
            },
            "https in production",
        ),
        ({"auth_clock_skew_seconds": 3600}, "less than or equal to 300"),
    ],
)
def test_bad_issuer_settings_stop_the_start(
    values: dict[str, Any], message: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings(_env_file=None, data_dir=tmp_path, **values)


def test_an_issuers_file_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "issuers.yaml"
    path.write_text(
        f"- issuer: {ISSUER_B}\n  jwks_url: https://b/jwks\n  algorithms: [RS256, PS256]\n",
        encoding="utf-8",
    )
    [issuer] = Settings(_env_file=None, auth_issuers_file=path).external_issuers
    assert issuer.audience == (ISSUER_B,)
    assert issuer.algorithms == ("RS256", "PS256")
    path.write_text(f"- issuer: {ISSUER_B}\n  jwks: https://b/jwks\n", encoding="utf-8")
    with pytest.raises(ValueError, match="issuer 1"):
        Settings(_env_file=None, auth_issuers_file=path)
    path.write_text("{not: [valid", encoding="utf-8")
    with pytest.raises(ValueError, match="is not valid"):
        Settings(_env_file=None, auth_issuers_file=path)
    with pytest.raises(ValueError, match="cannot read"):
        Settings(_env_file=None, auth_issuers_file=tmp_path / "missing.json")
