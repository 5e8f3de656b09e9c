"""The `/mcp` endpoint over raw HTTP: authentication (401 with `WWW-Authenticate`), the Host and
Origin checks (the allowlists come from settings, and default to loopback names only while the
server listens on loopback), no session by default, and, with `MCP_STATELESS=false`, sessions
that belong to the user who opened them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from parley.settings import Settings
from tests.fixtures.accounts import ApiKeyFactory, TestUser
from tests.fixtures.errors import assert_error
from tests.fixtures.mcp import INITIALIZE, mcp_server, open_session, rpc, rpc_headers, rpc_result
from tests.fixtures.servers import LiveServer, start_live_server, stop_live_server
from tests.fixtures.settings import make_settings

LIST_TOOLS = rpc("tools/list", request_id=2)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@pytest.mark.parametrize(
    ("authorization", "code"),
    [
        (None, "not_authenticated"),
        ("Bearer", "not_authenticated"),
        ("Basic dXNlcjpwYXNz", "not_authenticated"),
        ("Bearer not-a-token", "invalid_token"),
        ("Bearer pk_" + "A" * 40, "invalid_token"),
    ],
)
@pytest.mark.parametrize("method", ["POST", "GET", "DELETE"])
async def test_missing_or_bad_credentials_are_401(
    http: httpx.AsyncClient, mcp_url: str, authorization: str | None, code: str, method: str
) -> None:
    headers = rpc_headers(None)
    if authorization is not None:
        headers["Authorization"] = authorization
    response = await http.request(
        method, mcp_url, json=INITIALIZE if method == "POST" else None, headers=headers
    )
    assert_error(response, 401, code)


async def test_a_revoked_key_stops_working_at_once(
    http: httpx.AsyncClient,
    stateful_mcp_url: str,
    user: TestUser,
    make_api_key: ApiKeyFactory,
    client: httpx.AsyncClient,
) -> None:
    mcp_url = stateful_mcp_url
    key = await make_api_key(user)
    session_id = await open_session(http, mcp_url, key)
    listed = await http.post(mcp_url, json=LIST_TOOLS, headers=rpc_headers(key, session_id))
    assert listed.status_code == 200
    keys = await client.get("/api/users/me/api-keys", headers=user.headers)
    key_id = keys.json()["data"]["items"][0]["id"]
    await client.delete(f"/api/users/me/api-keys/{key_id}", headers=user.headers)
    refused = await http.post(mcp_url, json=LIST_TOOLS, headers=rpc_headers(key, session_id))
    assert_error(refused, 401, "invalid_token")


async def test_responses_carry_the_trace_id(
    http: httpx.AsyncClient, mcp_url: str, user: TestUser
) -> None:
    response = await http.post(mcp_url, json=INITIALIZE, headers=rpc_headers(user.access_token))
    assert response.status_code == 200
    assert len(response.headers["x-trace-id"]) == 32
    assert rpc_result(response)["result"]["capabilities"]["tools"] is not None


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "evil.example"}, 421),
        ({"Host": "evil.example:8000"}, 421),
        ({"Origin": "http://evil.example"}, 403),
        ({"Origin": "https://localhost:3000"}, 403),
        ({"Origin": "http://localhost:3000"}, 200),
        ({"Origin": "http://127.0.0.1:6274"}, 200),
    ],
)
async def test_host_and_origin_are_checked(
    http: httpx.AsyncClient, mcp_url: str, user: TestUser, headers: dict[str, str], status: int
) -> None:
    response = await http.post(
        mcp_url, json=INITIALIZE, headers=rpc_headers(user.access_token, **headers)
    )
    assert response.status_code == status, response.text


async def test_a_bad_host_is_refused_before_authentication(
    http: httpx.AsyncClient, mcp_url: str
) -> None:
    response = await http.post(
        mcp_url, json=INITIALIZE, headers=rpc_headers(None, Host="evil.example")
    )
    assert response.status_code == 421


@pytest.fixture(scope="module")
def public_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """A server configured for a public name, as behind a reverse proxy."""
    data_dir: Path = tmp_path_factory.mktemp("public")
    settings = make_settings(
        database_url,
        data_dir,
        mcp_allowed_hosts="parley.example.com",
        mcp_allowed_origins="https://app.example.com",
    )
    live = start_live_server(settings)
    try:
        yield live
    finally:
        stop_live_server(live)


async def test_allowlists_come_from_settings(
    http: httpx.AsyncClient, public_server: LiveServer, user: TestUser
) -> None:
    url = f"{public_server.url}/mcp"
    token = user.access_token
    loopback = await http.post(url, json=INITIALIZE, headers=rpc_headers(token))
    assert loopback.status_code == 421
    named = await http.post(
        url, json=INITIALIZE, headers=rpc_headers(token, Host="parley.example.com")
    )
    assert named.status_code == 200, named.text
    allowed = await http.post(
        url,
        json=INITIALIZE,
        headers=rpc_headers(token, Host="parley.example.com", Origin="https://app.example.com"),
    )
    assert allowed.status_code == 200, allowed.text
    foreign = await http.post(
        url,
        json=INITIALIZE,
        headers=rpc_headers(token, Host="parley.example.com", Origin="http://localhost:3000"),
    )
    assert foreign.status_code == 403


async def test_a_session_belongs_to_the_user_who_opened_it(
    http: httpx.AsyncClient,
    stateful_mcp_url: str,
    user: TestUser,
    other_user: TestUser,
    make_api_key: ApiKeyFactory,
) -> None:
    mcp_url = stateful_mcp_url
    session_id = await open_session(http, mcp_url, user.access_token)

    for intruder_token in (other_user.access_token, await make_api_key(other_user)):
        hijack = await http.post(
            mcp_url, json=LIST_TOOLS, headers=rpc_headers(intruder_token, session_id)
        )
        assert hijack.status_code == 404, hijack.text
        stream = await http.get(mcp_url, headers=rpc_headers(intruder_token, session_id))
        assert stream.status_code == 404
        ended = await http.delete(mcp_url, headers=rpc_headers(intruder_token, session_id))
        assert ended.status_code == 404

    # The owner, with any of their credentials, still has the session.
    for owner_token in (user.access_token, await make_api_key(user)):
        listed = await http.post(
            mcp_url, json=LIST_TOOLS, headers=rpc_headers(owner_token, session_id)
        )
        assert listed.status_code == 200, listed.text
        assert len(rpc_result(listed)["result"]["tools"]) == 7
    ended = await http.delete(mcp_url, headers=rpc_headers(user.access_token, session_id))
    assert ended.status_code == 200
    gone = await http.post(
        mcp_url, json=LIST_TOOLS, headers=rpc_headers(user.access_token, session_id)
    )
    assert gone.status_code == 404


async def test_an_unknown_session_id_is_404(
    http: httpx.AsyncClient, stateful_mcp_url: str, user: TestUser
) -> None:
    response = await http.post(
        stateful_mcp_url, json=LIST_TOOLS, headers=rpc_headers(user.access_token, "0" * 32)
    )
    assert response.status_code == 404


async def test_no_session_is_kept_by_default(
    http: httpx.AsyncClient, mcp_url: str, user: TestUser
) -> None:
    """Stateless: each request stands alone, so any worker of several can serve it."""
    for _ in range(3):
        opened = await http.post(mcp_url, json=INITIALIZE, headers=rpc_headers(user.access_token))
        assert opened.status_code == 200, opened.text
        assert "mcp-session-id" not in opened.headers
    # A request without a session (and without a handshake before it on this connection).
    listed = await http.post(mcp_url, json=LIST_TOOLS, headers=rpc_headers(user.access_token))
    assert listed.status_code == 200, listed.text
    assert len(rpc_result(listed)["result"]["tools"]) == 7


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),  # noqa: S104
        ("::", False),
        ("192.168.1.20", False),
        ("parley.internal", False),
    ],
)
def test_which_addresses_count_as_loopback(address: str, loopback: bool) -> None:
    settings = Settings(_env_file=None, serve_host=address)
    assert settings.serves_loopback_only is loopback
    assert (settings.effective_mcp_allowed_hosts is not None) is loopback
    assert (settings.effective_mcp_allowed_origins is not None) is loopback
    assert Settings(_env_file=None).serves_loopback_only  # unset: the strict defaults


@pytest.fixture(scope="module")
def everywhere_server(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`/mcp` of a server told it listens on every interface (`parley serve --host 0.0.0.0`)."""
    data_dir = tmp_path_factory.mktemp("everywhere")
    with mcp_server(database_url, data_dir, serve_host="0.0.0.0") as url:  # noqa: S104
        yield url


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Host": "parley.example.test:8000"},
        {"Host": "10.0.0.7"},
        {"Host": "parley.example.test", "Origin": "https://app.example.test"},
    ],
)
async def test_on_a_public_address_any_host_is_served_by_default(
    http: httpx.AsyncClient, everywhere_server: str, user: TestUser, headers: dict[str, str]
) -> None:
    """Behind a load balancer the Host is the public name, which Parley cannot know; the bearer
    credential is what guards `/mcp` there."""
    served = await http.post(
        everywhere_server, json=INITIALIZE, headers=rpc_headers(user.access_token, **headers)
    )
    assert served.status_code == 200, served.text
    anonymous = await http.post(
        everywhere_server, json=INITIALIZE, headers=rpc_headers(None, **headers)
    )
    assert_error(anonymous, 401, "not_authenticated")


@pytest.fixture(scope="module")
def everywhere_listed_server(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """On every interface, with both allowlists set explicitly."""
    with mcp_server(
        database_url,
        tmp_path_factory.mktemp("everywhere-listed"),
        serve_host="0.0.0.0",  # noqa: S104
        mcp_allowed_hosts="parley.example.com",
        mcp_allowed_origins="https://app.example.com",
    ) as url:
        yield url


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "parley.example.com"}, 200),
        ({"Host": "parley.example.com", "Origin": "https://app.example.com"}, 200),
        ({"Host": "evil.example"}, 421),
        ({}, 421),  # 127.0.0.1:port is not on the list either
        ({"Host": "parley.example.com", "Origin": "https://evil.example"}, 403),
    ],
)
async def test_explicit_allowlists_apply_on_a_public_address_too(
    http: httpx.AsyncClient,
    everywhere_listed_server: str,
    user: TestUser,
    headers: dict[str, str],
    status: int,
) -> None:
    response = await http.post(
        everywhere_listed_server, json=INITIALIZE, headers=rpc_headers(user.access_token, **headers)
    )
    assert response.status_code == status, response.text
