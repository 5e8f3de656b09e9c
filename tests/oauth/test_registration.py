"""`POST /oauth/register` (RFC 7591): public and confidential clients, and the metadata Parley
refuses, in RFC 7591's error shape."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.oauth.conftest import REDIRECT_URI, register


async def test_a_public_client_gets_an_id_and_no_secret(http: httpx.AsyncClient, base: str) -> None:
    response = await register(http, base)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["client_id"]
    assert body.get("client_secret") is None
    assert body["redirect_uris"] == [REDIRECT_URI]
    assert body["token_endpoint_auth_method"] == "none"
    assert response.headers["cache-control"] == "no-store"


async def test_a_confidential_client_gets_a_secret(http: httpx.AsyncClient, base: str) -> None:
    response = await register(http, base, token_endpoint_auth_method="client_secret_post")
    assert response.status_code == 201, response.text
    assert response.json()["client_secret"].startswith("pcs_")


@pytest.mark.parametrize(
    "uris",
    [
        ["https://app.example/callback"],
        ["http://localhost/cb", "http://[::1]:9000/cb"],
        ["com.example.app:/oauth/callback"],
    ],
)
async def test_allowed_redirect_uris(http: httpx.AsyncClient, base: str, uris: list[str]) -> None:
    response = await register(http, base, redirect_uris=uris)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("metadata", "error"),
    [
        ({"redirect_uris": ["http://app.example/callback"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["javascript:alert(1)"]}, "invalid_redirect_uri"),
        ({"redirect_uris": ["https://app.example/cb#fragment"]}, "invalid_redirect_uri"),
        (
            {"redirect_uris": [f"https://app.example/{i}" for i in range(11)]},
            "invalid_redirect_uri",
        ),
        ({"redirect_uris": ["https://app.example/" + "a" * 2100]}, "invalid_redirect_uri"),
        ({"redirect_uris": []}, "invalid_client_metadata"),
        ({"redirect_uris": None}, "invalid_redirect_uri"),
        ({"grant_types": ["authorization_code", "password"]}, "invalid_client_metadata"),
        ({"grant_types": ["refresh_token"]}, "invalid_client_metadata"),
        ({"response_types": ["token"]}, "invalid_client_metadata"),
        ({"token_endpoint_auth_method": "client_secret_basic"}, "invalid_client_metadata"),
        ({"token_endpoint_auth_method": "private_key_jwt"}, "invalid_client_metadata"),
        ({"client_name": "x" * 101}, "invalid_client_metadata"),
    ],
)
async def test_refused_metadata(
    http: httpx.AsyncClient, base: str, metadata: dict[str, Any], error: str
) -> None:
    response = await register(http, base, **metadata)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_description"]


async def test_a_body_that_is_not_json(http: httpx.AsyncClient, base: str) -> None:
    response = await http.post(
        f"{base}/oauth/register", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client_metadata"


async def test_an_oversized_body(http: httpx.AsyncClient, base: str) -> None:
    response = await register(http, base, contacts=["a@example.com"] * 2000)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client_metadata"
