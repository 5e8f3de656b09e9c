"""The ownership matrix, built from the app's route table and the MCP server's tool list.

For every route that takes one of a user's rows in its path (REST, the stream, stop, resume,
regenerate, API keys) a second user gets 404 `not_found` for the first user's row — with the row
alone, and mixed with a row of their own (their chat and the victim's message) — and afterwards the
first user's rows are exactly as they were (the reply in progress is still running). The same holds
for every MCP tool that takes an id, and for ids passed in bodies and queries (`parent_id`,
`leaf_id`, `current_leaf_id`, `api_key_id`).

Every route must be classified: in `OWNED_ROUTES` (probed here), `ADMIN_ROUTES` (403 for a
non-admin, probed here) or `NO_USER_RESOURCE` (a reviewed allow-list, each with its reason). A new
route in none of them fails `test_every_route_is_classified`, and so does a stale entry.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import mcp.types as types
import pytest

from tests.fixtures.accounts import TestUser, UserFactory
from tests.fixtures.chats import branch
from tests.fixtures.mcp import mcp_client
from tests.fixtures.routes import RESOURCE_PARAMS, RouteKey, route_table
from tests.fixtures.servers import LiveServer

# Routes that act on one of the caller's own rows, named in the path; the body each probe sends
# (valid, so that validation cannot answer before the ownership check does).
OWNED_ROUTES: dict[str, dict[str, Any] | None] = {
    "GET /api/tasks/{task_id}": None,
    "PATCH /api/tasks/{task_id}": {"title": "taken over", "completed": True},
    "DELETE /api/tasks/{task_id}": None,
    "GET /api/chats/{chat_id}": None,
    "PATCH /api/chats/{chat_id}": {"title": "taken over", "archived": True},
    "DELETE /api/chats/{chat_id}": None,
    "GET /api/chats/{chat_id}/messages": None,
    "POST /api/chats/{chat_id}/messages": {"content": "taken over"},
    "POST /api/chats/{chat_id}/messages/{message_id}/regenerate": {},
    "POST /api/chats/{chat_id}/stop": None,
    "GET /api/chats/{chat_id}/stream": None,
    "DELETE /api/users/me/api-keys/{key_id}": None,
    "GET /api/files/{file_id}": None,
    "GET /api/files/{file_id}/content": None,
    "DELETE /api/files/{file_id}": None,
    "GET /api/knowledge/{knowledge_id}": None,
    "PATCH /api/knowledge/{knowledge_id}": {"name": "taken over"},
    "DELETE /api/knowledge/{knowledge_id}": None,
    "GET /api/knowledge/{knowledge_id}/files": None,
    "POST /api/knowledge/{knowledge_id}/files": {"file_id": "0190a000-0000-7000-8000-000000000000"},
    "DELETE /api/knowledge/{knowledge_id}/files/{file_id}": None,
}

# Admin-only routes over rows that belong to no one user (accounts, the catalog): a non-admin gets
# 403 before anything is looked up; the probe body each sends.
ADMIN_ROUTES: dict[str, tuple[str, dict[str, Any]]] = {
    "GET /api/admin/users": ("/api/admin/users", {}),
    "PATCH /api/admin/users/{user_id}": ("/api/admin/users/{victim}", {"is_admin": True}),
    "PATCH /api/admin/models/{model_id}": ("/api/admin/models/offline:parley", {"enabled": False}),
    "GET /api/admin/usage": ("/api/admin/usage", {}),
    "GET /api/admin/jobs": ("/api/admin/jobs", {}),
    "GET /api/admin/audit": ("/api/admin/audit", {}),
    "POST /api/admin/jobs/{job_id}/cancel": ("/api/admin/jobs/{victim}/cancel", {}),
    "POST /api/admin/jobs/{job_id}/retry": ("/api/admin/jobs/{victim}/retry", {}),
}

# Reviewed: routes that take no user's row by id. Each acts on the caller only (`me`, lists that
# are scoped to the caller), or on what is no one's (health, the catalog, the web page).
NO_USER_RESOURCE: dict[str, str] = {
    "GET /health/live": "liveness; no data",
    "GET /health/ready": "readiness; no data",
    "POST /api/auth/register": "creates a new account",
    "POST /api/auth/login": "credentials, not ids",
    "POST /api/auth/token": "credentials, not ids",
    "POST /api/auth/guest": "creates a new account",
    "POST /api/auth/upgrade": "the caller's own account",
    "POST /api/auth/refresh": "a refresh token (its family is checked in test_tokens.py)",
    "POST /api/auth/logout": "a refresh token (its family is checked in test_tokens.py)",
    "GET /api/users/me": "the caller",
    "PATCH /api/users/me": "the caller",
    "POST /api/users/me/password": "the caller",
    "GET /api/users/me/api-keys": "the caller's keys (no other's listed: checked here)",
    "POST /api/users/me/api-keys": "creates a key of the caller",
    "POST /api/tasks": "creates a task of the caller",
    "GET /api/tasks": "the caller's tasks (no other's listed: checked here)",
    "POST /api/chats": "creates a chat of the caller",
    "GET /api/chats": "the caller's chats (no other's listed: checked here)",
    "GET /api/models": "the model catalog is shared by every user, not a per-user resource",
    "GET /api/usage": "the caller's own totals",
    "GET /api/usage/records": "the caller's own records (`api_key_id` of another: checked here)",
    "GET /v1/models": "the model catalog is shared by every user, not a per-user resource",
    "GET /v1/models/{model}": "a catalog model (shared by every user), not a per-user resource",
    "POST /v1/chat/completions": "stateless: a completion stores no conversation to own",
    "POST /v1/embeddings": "stateless: reads and stores no user data",
    "POST /api/files": "creates a file of the caller (another's knowledge_id: tests/knowledge)",
    "GET /api/files": "the caller's files (no other's listed: checked here)",
    "POST /api/knowledge": "creates a knowledge base of the caller",
    "GET /api/knowledge": "the caller's knowledge bases (no other's listed: checked here)",
    "GET /api/knowledge/search": "the caller's files only (another's ids in the query: here)",
    "GET /api/knowledge/chunks/{chunk_id}": (
        "a passage of the caller's files; another's is a 404 in tests/knowledge/"
        "test_knowledge_api.py (this matrix's files are never ingested, so have no passages)"
    ),
    "GET /api/events": "the caller's own events (another's Last-Event-ID is a 404: tests/events)",
    "GET /api/events/schemas": "the event types' JSON Schemas (public, like the OpenAPI document)",
    "GET /api/audit": "the caller's own audit records (another's never listed: tests/events)",
    "GET /": "the web page (static, public)",
    "GET /static/{version}/{path}": "the web page's static files (public)",
    "GET /docs": "the API docs page (public)",
    "GET /docs/oauth2-redirect": "Swagger UI's OAuth 2 redirect page (public)",
    "GET /redoc": "the API docs page (public)",
    "GET /docs/assets/{name}": "the API docs pages' static files (public)",
    "GET /api/users/me/connections": "the caller's own OAuth grants (tests/oauth)",
    "DELETE /api/users/me/connections/{connection_id}": (
        "revokes one of the caller's grants; another user's is a 404 in "
        "tests/oauth/test_connections.py (a grant needs the whole OAuth flow to exist)"
    ),
    "GET /.well-known/oauth-authorization-server": "OAuth metadata (public, RFC 8414)",
    "OPTIONS /.well-known/oauth-authorization-server": "CORS preflight of the OAuth metadata",
    "GET /.well-known/oauth-protected-resource": "OAuth metadata (public, RFC 9728)",
    "OPTIONS /.well-known/oauth-protected-resource": "CORS preflight of the OAuth metadata",
    "GET /.well-known/oauth-protected-resource/mcp": "OAuth metadata (public, RFC 9728)",
    "OPTIONS /.well-known/oauth-protected-resource/mcp": "CORS preflight of the OAuth metadata",
    "GET /oauth/authorize": "the sign-in and consent page: credentials, not ids",
    "POST /oauth/authorize": "the sign-in and consent form: credentials, not ids",
    "POST /oauth/register": "registers a new OAuth client (RFC 7591); no user's row",
    "OPTIONS /oauth/register": "CORS preflight of client registration",
    "POST /oauth/token": "codes and refresh tokens, each bound to its client (tests/oauth)",
    "OPTIONS /oauth/token": "CORS preflight of the token endpoint",
    "GET /mcp": "MCP transport; its tools are classified in MCP_TOOLS below",
    "POST /mcp": "MCP transport; its tools are classified in MCP_TOOLS below",
    "DELETE /mcp": "MCP transport session end; sessions are bound to their user by the SDK",
}

# Every MCP tool: the argument that names a row of the caller (None: it takes no id), and the
# valid arguments of a probe.
MCP_TOOLS: dict[str, tuple[str | None, dict[str, Any]]] = {
    "add_task": (None, {"title": "mine"}),
    "list_tasks": (None, {}),
    "get_task": ("task_id", {}),
    "update_task": ("task_id", {"title": "taken over", "completed": True}),
    "complete_task": ("task_id", {}),
    "delete_task": ("task_id", {}),
    "search_knowledge": (None, {"query": "theirs"}),
}


def _normalized(key: RouteKey) -> str:
    """`GET /api/admin/models/{model_id}` for `{model_id:path}`-style paths too."""
    path = key.path
    for marker in (":path}",):
        path = path.replace(marker, "}")
    return f"{key.method} {path}"


def test_every_route_is_classified(robust_live: LiveServer) -> None:
    table = {_normalized(key): key for key in route_table(robust_live.app)}
    known = set(OWNED_ROUTES) | set(ADMIN_ROUTES) | set(NO_USER_RESOURCE)
    unclassified = sorted(set(table) - known)
    assert not unclassified, (
        "routes the ownership matrix does not cover; add each to OWNED_ROUTES (and probe it), "
        f"ADMIN_ROUTES or NO_USER_RESOURCE (with a reason): {unclassified}"
    )
    stale = sorted(known - set(table))
    assert not stale, f"matrix entries for routes that no longer exist: {stale}"
    assert not set(OWNED_ROUTES) & set(NO_USER_RESOURCE)
    for name in OWNED_ROUTES:
        assert set(table[name].params) <= RESOURCE_PARAMS, name
    for name in NO_USER_RESOURCE:
        assert not set(table[name].params) & RESOURCE_PARAMS, f"{name} takes a user's row"


@dataclass
class Rows:
    """One user's rows, by what they are."""

    task: str
    chat: str  # with one finished turn
    user_message: str
    reply: str
    busy_chat: str  # with a reply in progress
    busy_reply: str
    key: str
    file: str
    knowledge: str


async def _rows(
    http: httpx.AsyncClient, owner: TestUser, *, busy_on: httpx.AsyncClient | None = None
) -> Rows:
    """`owner`'s rows; with `busy_on` (a slow server), a second chat whose reply is running."""
    task = await http.post("/api/tasks", json={"title": "mine"}, headers=owner.headers)
    knowledge = await http.post("/api/knowledge", json={"name": "mine"}, headers=owner.headers)
    uploaded = await http.post(
        "/api/files",
        files={"file": ("mine.md", b"# Mine\n\ntheirs and mine", "text/markdown")},
        data={"knowledge_id": knowledge.json()["data"]["id"]},
        headers=owner.headers,
    )
    assert knowledge.status_code == uploaded.status_code == 201, uploaded.text
    chat = await http.post("/api/chats", json={"title": "mine"}, headers=owner.headers)
    key = await http.post("/api/users/me/api-keys", json={"name": "mine"}, headers=owner.headers)
    assert task.status_code == chat.status_code == key.status_code == 201
    chat_id = chat.json()["data"]["id"]
    turn = await http.post(
        f"/api/chats/{chat_id}/messages",
        params={"stream": "false"},
        json={"content": "hello"},
        headers=owner.headers,
    )
    assert turn.status_code == 201, turn.text
    busy_chat, busy_reply = chat_id, turn.json()["data"]["assistant_message"]["id"]
    if busy_on is not None:
        other = await http.post("/api/chats", json={"title": "busy"}, headers=owner.headers)
        busy_chat = other.json()["data"]["id"]
        async with busy_on.stream(
            "POST",
            f"/api/chats/{busy_chat}/messages",
            json={"content": "tell me about yourself"},
            headers=owner.headers,
        ) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data: ") and '"start"' in line:
                    busy_reply = json.loads(line[6:])["messageId"]
                    break  # the client goes; the reply goes on
    return Rows(
        task=task.json()["data"]["id"],
        chat=chat_id,
        user_message=turn.json()["data"]["user_message"]["id"],
        reply=turn.json()["data"]["assistant_message"]["id"],
        busy_chat=busy_chat,
        busy_reply=busy_reply,
        key=key.json()["data"]["id"],
        file=uploaded.json()["data"]["id"],
        knowledge=knowledge.json()["data"]["id"],
    )


async def _snapshot(http: httpx.AsyncClient, owner: TestUser, rows: Rows) -> dict[str, Any]:
    """Everything of `owner`'s that a probe could have changed."""

    async def get(path: str, **params: Any) -> Any:
        response = await http.get(path, params=params, headers=owner.headers)
        assert response.status_code == 200, (path, response.text)
        return response.json()["data"]

    busy_chat = await get(f"/api/chats/{rows.busy_chat}")
    return {
        "me": await get("/api/users/me"),
        "task": await get(f"/api/tasks/{rows.task}"),
        "tasks": await get("/api/tasks", limit=100),
        "chat": await get(f"/api/chats/{rows.chat}"),
        "chats": [c["id"] for c in (await get("/api/chats", limit=100))["items"]],
        "messages": await get(f"/api/chats/{rows.chat}/messages", limit=100),
        "busy_chat": {k: v for k, v in busy_chat.items() if k != "updated_at"},
        "keys": await get("/api/users/me/api-keys", limit=100),
        "file": {
            k: v
            for k, v in (await get(f"/api/files/{rows.file}")).items()
            if k not in ("status", "progress", "chunks", "pages", "updated_at", "error")
        },
        "files": [f["id"] for f in (await get("/api/files", limit=100))["items"]],
        "knowledge": await get(f"/api/knowledge/{rows.knowledge}"),
    }


@pytest.fixture
async def slow_http(slow_live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=slow_live.url, timeout=30) as http:
        yield http


@pytest.fixture
async def fast_http(robust_live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=robust_live.url, timeout=30) as http:
        yield http


def _probes(victim: Rows, attacker: Rows) -> list[tuple[str, dict[str, str]]]:
    """(route, path values) for every owned route: the victim's rows, alone and mixed with the
    attacker's own (at least one value is always the victim's)."""
    options = {
        "task_id": [(victim.task, True)],
        "chat_id": [
            (victim.chat, True),
            (victim.busy_chat, True),
            (attacker.chat, False),
        ],
        "message_id": [
            (victim.reply, True),
            (victim.user_message, True),
            (attacker.reply, False),
        ],
        "key_id": [(victim.key, True)],
        "file_id": [(victim.file, True), (attacker.file, False)],
        "knowledge_id": [(victim.knowledge, True), (attacker.knowledge, False)],
    }
    probes: list[tuple[str, dict[str, str]]] = []
    for name in OWNED_ROUTES:
        key = RouteKey(*name.split(" ", 1))
        params = key.params
        for combination in itertools.product(*(options[param] for param in params)):
            if not any(is_victims for _, is_victims in combination):
                continue
            probes.append(
                (name, {p: value for p, (value, _) in zip(params, combination, strict=True)})
            )
    return probes


async def test_a_second_user_gets_404_and_changes_nothing(
    fast_http: httpx.AsyncClient, slow_http: httpx.AsyncClient, make_user: UserFactory
) -> None:
    # The slow server runs the victim's reply in progress and answers the probes (its stop and
    # resume see that reply); finished turns are made on the fast one (same database).
    http = slow_http
    victim, attacker = await make_user(), await make_user()
    attacker_rows = await _rows(fast_http, attacker)
    victim_rows = await _rows(fast_http, victim, busy_on=slow_http)
    before = await _snapshot(http, victim, victim_rows)

    probes = _probes(victim_rows, attacker_rows)
    assert len(probes) >= len(OWNED_ROUTES)
    answered: dict[str, int] = {}
    for name, values in probes:
        method, template = name.split(" ", 1)
        url = RouteKey(method, template).url(values)
        body = OWNED_ROUTES[name]
        response = await http.request(
            method,
            url,
            params={"stream": "false"} if name.endswith("/messages") and method == "POST" else None,
            json=body if method in ("POST", "PATCH") else None,
            headers=attacker.headers,
        )
        answered[f"{name} {values}"] = response.status_code
        assert response.status_code == 404, (name, values, response.status_code, response.text)
        assert response.json()["error"]["code"] == "not_found"

    # Ids in bodies and queries: the attacker's own chat, pointed at the victim's messages.
    own_chat = f"/api/chats/{attacker_rows.chat}"
    indirect = [
        await http.get(
            f"{own_chat}/messages", params={"leaf_id": victim_rows.reply}, headers=attacker.headers
        ),
        await http.patch(
            own_chat, json={"current_leaf_id": victim_rows.reply}, headers=attacker.headers
        ),
        await http.post(
            f"{own_chat}/messages",
            params={"stream": "false"},
            json={"content": "branch off theirs", "parent_id": victim_rows.reply},
            headers=attacker.headers,
        ),
    ]
    indirect += [
        await http.get(
            "/api/knowledge/search",
            params={"q": "theirs", "file_id": victim_rows.file},
            headers=attacker.headers,
        ),
        await http.get(
            "/api/knowledge/search",
            params={"q": "theirs", "knowledge_id": victim_rows.knowledge},
            headers=attacker.headers,
        ),
        await http.post(
            f"/api/knowledge/{attacker_rows.knowledge}/files",
            json={"file_id": victim_rows.file},
            headers=attacker.headers,
        ),
        await http.post(
            "/api/chats",
            json={"knowledge_ids": [victim_rows.knowledge]},
            headers=attacker.headers,
        ),
        await http.post(
            f"{own_chat}/messages",
            params={"stream": "false"},
            json={"parts": [{"type": "file", "file_id": victim_rows.file}]},
            headers=attacker.headers,
        ),
    ]
    for response in indirect:
        assert response.status_code == 404, (response.request.url, response.text)
    records = await http.get(
        "/api/usage/records", params={"api_key_id": victim_rows.key}, headers=attacker.headers
    )
    assert records.status_code in (200, 404), records.text
    if records.status_code == 200:
        assert records.json()["data"]["items"] == []

    # Lists show the attacker only their own rows.
    for path, victims_id in (
        ("/api/tasks", victim_rows.task),
        ("/api/chats", victim_rows.chat),
        ("/api/users/me/api-keys", victim_rows.key),
        ("/api/files", victim_rows.file),
        ("/api/knowledge", victim_rows.knowledge),
    ):
        listed = await http.get(path, params={"limit": 100}, headers=attacker.headers)
        assert victims_id not in {item["id"] for item in listed.json()["data"]["items"]}

    # The victim's reply in progress was neither stopped nor taken over; then it ends normally.
    busy = await branch(http, victim, victim_rows.busy_chat)
    assert busy[-1]["id"] == victim_rows.busy_reply
    assert busy[-1]["status"] == "streaming", "another user's stop or send reached the reply"
    stopped = await http.post(f"/api/chats/{victim_rows.busy_chat}/stop", headers=victim.headers)
    assert stopped.status_code in (204, 409)
    after = await _snapshot(http, victim, victim_rows)
    assert after == before


async def test_admin_routes_refuse_other_users(
    robust_live: LiveServer, make_user: UserFactory
) -> None:
    victim, someone = await make_user(), await make_user()
    async with httpx.AsyncClient(base_url=robust_live.url, timeout=30) as http:
        me_before = (await http.get("/api/users/me", headers=victim.headers)).json()["data"]
        for name, (path, body) in ADMIN_ROUTES.items():
            method = name.split(" ", 1)[0]
            response = await http.request(
                method,
                path.format(victim=victim.id),
                json=body if method == "PATCH" else None,
                headers=someone.headers,
            )
            assert response.status_code == 403, (name, response.text)
            assert response.json()["error"]["code"] == "forbidden"
        me_after = (await http.get("/api/users/me", headers=victim.headers)).json()["data"]
        models = await http.get("/api/models", headers=victim.headers)
    assert me_after == me_before
    assert "offline:parley" in {model["id"] for model in models.json()["data"]["items"]}


def _tool_text(result: types.CallToolResult) -> str:
    return " ".join(item.text for item in result.content if isinstance(item, types.TextContent))


async def test_every_mcp_tool_keeps_to_its_user(
    robust_live: LiveServer, make_user: UserFactory
) -> None:
    victim, attacker = await make_user(), await make_user()
    async with httpx.AsyncClient(base_url=robust_live.url, timeout=30) as http:
        created = await http.post(
            "/api/tasks", json={"title": "theirs", "tags": ["x"]}, headers=victim.headers
        )
        task = created.json()["data"]
        url = f"{robust_live.url}/mcp"
        async with mcp_client(url, attacker.access_token) as session:
            listed = await session.list_tools()
            tools = {tool.name: tool for tool in listed.tools}
            unclassified = sorted(set(tools) - set(MCP_TOOLS))
            assert not unclassified, f"MCP tools the matrix does not cover: {unclassified}"
            assert not set(MCP_TOOLS) - set(tools), "stale MCP_TOOLS entries"
            for name, tool in tools.items():
                takes_ids = {
                    p for p in tool.input_schema.get("properties", {}) if p.endswith("_id")
                }
                id_argument, arguments = MCP_TOOLS[name]
                assert takes_ids == ({id_argument} if id_argument else set()), name
                if id_argument is None:
                    result = await session.call_tool(name, arguments)
                    assert not result.is_error, _tool_text(result)
                    assert task["id"] not in json.dumps(result.structured_content)
                    continue
                result = await session.call_tool(name, {**arguments, id_argument: task["id"]})
                assert result.is_error, (name, result.structured_content)
                text = _tool_text(result).lower()
                assert "not found" in text or "no such task" in text, text
        after = await http.get(f"/api/tasks/{task['id']}", headers=victim.headers)
    assert after.status_code == 200
    assert after.json()["data"] == task
