"""Discovery: `/mcp`'s 401 names its protected-resource metadata, and the two metadata documents
(RFC 9728, RFC 8414) describe Parley, at the origin the request reached, as its own authorization
server."""

from __future__ import annotations

import httpx
import pytest

from tests.fixtures.mcp import INITIALIZE, rpc_headers


@pytest.mark.parametrize("token", [None, "not-a-token", "pk_" + "A" * 40])
async def test_mcp_401_names_the_resource_metadata(
    http: httpx.AsyncClient, base: str, token: str | None
) -> None:
    response = await http.post(f"{base}/mcp", json=INITIALIZE, headers=rpc_headers(token))
    assert response.status_code == 401
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith(
        f'Bearer resource_metadata="{base}/.well-known/oauth-protected-resource/mcp"'
    )
    assert ('error="invalid_token"' in challenge) is (token is not None)
    body = response.json()
    assert set(body) == {"trace_id", "error"}
    assert body["error"]["code"] == ("invalid_token" if token else "not_authenticated")


async def test_rest_401_keeps_its_plain_challenge(http: httpx.AsyncClient, base: str) -> None:
    response = await http.get(f"{base}/api/users/me")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "path", ["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"]
)
async def test_protected_resource_metadata(http: httpx.AsyncClient, base: str, path: str) -> None:
    response = await http.get(f"{base}{path}")
    assert response.status_code == 200
    document = response.json()
    assert document["resource"] == f"{base}/mcp"
    assert document["authorization_servers"] == [base]
    assert document["bearer_methods_supported"] == ["header"]


async def test_authorization_server_metadata(http: httpx.AsyncClient, base: str) -> None:
    response = await http.get(f"{base}/.well-known/oauth-authorization-server")
    assert response.status_code == 200
    document = response.json()
    assert document["issuer"] == base
    assert document["authorization_endpoint"] == f"{base}/oauth/authorize"
    assert document["token_endpoint"] == f"{base}/oauth/token"
    assert document["registration_endpoint"] == f"{base}/oauth/register"
    assert document["response_types_supported"] == ["code"]
    assert document["grant_types_supported"] == ["authorization_code", "refresh_token"]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert set(document["token_endpoint_auth_methods_supported"]) == {
        "none",
        "client_secret_post",
    }


async def test_documents_follow_the_host_the_request_names(client: httpx.AsyncClient) -> None:
    response = await client.get(
        "/.well-known/oauth-protected-resource", headers={"Host": "parley.example:8443"}
    )
    assert response.json()["resource"] == "http://parley.example:8443/mcp"


async def test_metadata_is_open_to_browser_clients(http: httpx.AsyncClient, base: str) -> None:
    response = await http.get(
        f"{base}/.well-known/oauth-authorization-server",
        headers={"Origin": "http://localhost:6274"},
    )
    assert response.headers["access-control-allow-origin"] == "*"
