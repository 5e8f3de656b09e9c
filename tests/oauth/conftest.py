"""Fixtures and helpers for the OAuth tests: a public client registered on the live server (whose
origin is the `<base>` every document names), PKCE pairs, the consent page answered as a browser
would, and the code exchanged for tokens."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.fixtures.accounts import TestUser
from tests.fixtures.mcp import INITIALIZE, rpc_headers
from tests.fixtures.servers import LiveServer

REDIRECT_URI = "http://127.0.0.1:8765/callback"
HIDDEN_INPUT = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)">')


def pkce_pair() -> tuple[str, str]:
    """A PKCE `(code_verifier, code_challenge)` with S256."""
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).decode().rstrip("=")


def form_fields(page: str) -> dict[str, str]:
    """The hidden fields of the consent page's form (the request's parameters, the CSRF token)."""
    return {name: html.unescape(value) for name, value in HIDDEN_INPUT.findall(page)}


def redirect_params(response: httpx.Response) -> dict[str, str]:
    """The query parameters of a redirect's `Location`."""
    assert response.status_code == 302, response.text
    query = parse_qs(urlsplit(response.headers["location"]).query)
    return {name: values[0] for name, values in query.items()}


@dataclass
class Authorization:
    """What an authorization request was made with."""

    client_id: str
    redirect_uri: str
    verifier: str
    challenge: str
    state: str

    def query(self, **overrides: str | None) -> dict[str, str]:
        values: dict[str, str | None] = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "state": self.state,
            "code_challenge": self.challenge,
            "code_challenge_method": "S256",
        }
        values.update(overrides)
        return {name: value for name, value in values.items() if value is not None}


@pytest.fixture
def base(live_server: LiveServer) -> str:
    return live_server.url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def register(http: httpx.AsyncClient, base: str, **metadata: Any) -> httpx.Response:
    """POST a registration, with a public client's defaults for what `metadata` leaves out."""
    body: dict[str, Any] = {
        "client_name": "Test MCP client",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    }
    body.update(metadata)
    return await http.post(f"{base}/oauth/register", json=body)


@pytest.fixture
async def client_id(http: httpx.AsyncClient, base: str) -> str:
    """A public client registered on the live server."""
    response = await register(http, base)
    assert response.status_code == 201, response.text
    return str(response.json()["client_id"])


def new_authorization(client_id: str, redirect_uri: str = REDIRECT_URI) -> Authorization:
    verifier, challenge = pkce_pair()
    return Authorization(client_id, redirect_uri, verifier, challenge, secrets.token_urlsafe(16))


async def consent(
    http: httpx.AsyncClient,
    base: str,
    authorization: Authorization,
    user: TestUser,
    *,
    decision: str = "allow",
    password: str | None = None,
    **query: str | None,
) -> httpx.Response:
    """Open the consent page and answer it as `user`; the answer (not followed)."""
    page = await http.get(f"{base}/oauth/authorize", params=authorization.query(**query))
    assert page.status_code == 200, page.text
    fields = form_fields(page.text)
    fields.update(
        email=user.email or "", password=password or user.password or "", decision=decision
    )
    return await http.post(f"{base}/oauth/authorize", data=fields)


async def authorization_code(
    http: httpx.AsyncClient, base: str, authorization: Authorization, user: TestUser
) -> str:
    """A code for `user`, through the consent page."""
    params = redirect_params(await consent(http, base, authorization, user))
    assert params["state"] == authorization.state
    assert params["iss"] == base
    return params["code"]


async def exchange(
    http: httpx.AsyncClient, base: str, authorization: Authorization, code: str, **extra: str
) -> httpx.Response:
    """POST the code to the token endpoint."""
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": authorization.redirect_uri,
        "client_id": authorization.client_id,
        "code_verifier": authorization.verifier,
        "resource": f"{base}/mcp",
    }
    data.update(extra)
    return await http.post(f"{base}/oauth/token", data=data)


async def tokens_for(
    http: httpx.AsyncClient, base: str, client_id: str, user: TestUser
) -> dict[str, Any]:
    """An access and refresh token of `user` for the client, through the whole flow."""
    authorization = new_authorization(client_id)
    code = await authorization_code(http, base, authorization, user)
    response = await exchange(http, base, authorization, code)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def refresh(
    http: httpx.AsyncClient, base: str, client_id: str, refresh_token: str
) -> httpx.Response:
    return await http.post(
        f"{base}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client_id,
        },
    )


async def mcp_status(http: httpx.AsyncClient, base: str, token: str) -> int:
    """The status `/mcp` answers an initialize sent with `token`."""
    response = await http.post(f"{base}/mcp", json=INITIALIZE, headers=rpc_headers(token))
    return response.status_code
