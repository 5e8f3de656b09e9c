"""The whole flow as an MCP client runs it, with the `mcp` SDK's own OAuth client: a 401 from
`/mcp`, discovery, dynamic registration, the consent page (answered here as a browser and its
user would), the code exchange, tool calls as the user, and a refresh when the token expires."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import parse_qs, urlsplit

import httpx
import httpx2
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)
from pydantic import AnyUrl

from tests.fixtures.accounts import TestUser
from tests.oauth.conftest import REDIRECT_URI, form_fields


class MemoryTokenStorage:
    """The SDK's `TokenStorage`, in memory."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class Browser:
    """The user's side of the redirect: opens the authorization URL, signs in, allows, and keeps
    the code and state the redirect carries back to the client."""

    def __init__(self, user: TestUser) -> None:
        self.user = user
        self.visits = 0
        self.result: AuthorizationCodeResult | None = None

    async def redirect(self, authorization_url: str) -> None:
        self.visits += 1
        async with httpx.AsyncClient(timeout=30) as http:
            page = await http.get(authorization_url)
            assert page.status_code == 200, page.text
            fields = form_fields(page.text)
            fields.update(
                email=self.user.email or "", password=self.user.password or "", decision="allow"
            )
            answer = await http.post(str(page.url.copy_with(query=None)), data=fields)
        assert answer.status_code == 302, answer.text
        location = answer.headers["location"]
        assert location.startswith(REDIRECT_URI + "?")
        query = {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}
        self.result = AuthorizationCodeResult(
            code=query["code"], state=query.get("state"), iss=query.get("iss")
        )

    async def callback(self) -> AuthorizationCodeResult:
        assert self.result is not None
        return self.result


def oauth_provider(url: str, storage: MemoryTokenStorage, browser: Browser) -> OAuthClientProvider:
    return OAuthClientProvider(
        server_url=url,
        client_metadata=OAuthClientMetadata(
            client_name="SDK test client",
            redirect_uris=[AnyUrl(REDIRECT_URI)],
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=browser.redirect,
        callback_handler=browser.callback,
    )


@asynccontextmanager
async def connected(url: str, auth: OAuthClientProvider) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(auth=auth, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as session,
    ):
        yield session


async def test_the_sdk_client_signs_in_and_calls_tools(
    base: str, user: TestUser, client: httpx.AsyncClient
) -> None:
    url = f"{base}/mcp"
    storage = MemoryTokenStorage()
    browser = Browser(user)
    auth = oauth_provider(url, storage, browser)
    async with connected(url, auth) as session:
        tools = await session.list_tools()
        assert "add_task" in {tool.name for tool in tools.tools}
        added = await session.call_tool("add_task", {"title": "Added over OAuth"})
        assert added.structured_content is not None
        assert added.structured_content["title"] == "Added over OAuth"
    assert browser.visits == 1
    assert storage.client_info is not None
    assert storage.tokens is not None
    assert storage.tokens.refresh_token

    tasks = await client.get("/api/tasks", headers=user.headers)
    assert "Added over OAuth" in [task["title"] for task in tasks.json()["data"]["items"]]
    connections = await client.get("/api/users/me/connections", headers=user.headers)
    assert [item["client_name"] for item in connections.json()["data"]["items"]] == [
        "SDK test client"
    ]

    # The access token expires: the client refreshes it, without the browser.
    first = storage.tokens
    auth.context.token_expiry_time = time.time() - 1
    async with connected(url, auth) as session:
        page = await session.call_tool("list_tasks", {})
        assert page.structured_content is not None
        assert [task["title"] for task in page.structured_content["items"]] == ["Added over OAuth"]
    assert browser.visits == 1
    assert storage.tokens is not None
    assert storage.tokens.access_token != first.access_token
    assert storage.tokens.refresh_token != first.refresh_token


async def test_api_keys_still_work_on_mcp(
    base: str, user: TestUser, client: httpx.AsyncClient
) -> None:
    created = await client.post(
        "/api/users/me/api-keys", json={"name": "mcp"}, headers=user.headers
    )
    key = created.json()["data"]["key"]
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http)) as session,
    ):
        tools = await session.list_tools()
        assert tools.tools
