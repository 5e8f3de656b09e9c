"""Hostile input, each a clear 4xx and never a 5xx: bodies over the cap (declared and chunked) on
every write route, deeply nested and undecodable JSON, a 1 MB message, NUL characters and lone
surrogates in every string field of every write body and string query parameter (PostgreSQL cannot
store NUL: 422, not 500), huge and negative `limit`s, forged and stale cursors, and ids that are
not UUIDs. Routes, bodies and parameters come from the app's own OpenAPI schema."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from parley.core.pagination import CursorCodec
from parley.tasks.repository import SORT_KEYS
from parley.tasks.service import TaskSort
from tests.fixtures.accounts import TestUser, UserFactory
from tests.fixtures.errors import assert_envelope_error
from tests.fixtures.routes import (
    RESOURCE_PARAMS,
    RouteKey,
    SampleBuilder,
    json_body_schema,
    operations,
    replaced,
    route_table,
    string_paths,
)
from tests.fixtures.servers import LiveServer, start_live_server, stop_live_server
from tests.fixtures.settings import live_settings

SMALL_CAP = 64 * 1024
HOSTILE_TEXT = {"nul": "a\u0000b", "lone surrogate": "a\ud800b"}


def _is_clear_refusal(response: httpx.Response, path: str, statuses: tuple[int, ...]) -> bool:
    if response.status_code not in statuses:
        return False
    body = response.json()
    return "error" in body and (path.startswith("/v1") or set(body) == {"trace_id", "error"})


@pytest.fixture(scope="module")
def small_cap_live(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    settings = live_settings(
        database_url,
        tmp_path_factory.mktemp("cap"),
        max_body_bytes=SMALL_CAP,
        max_upload_bytes=1024,  # uploads' own cap: 1 KiB and 64 KiB of framing
    )
    live = start_live_server(settings)
    try:
        yield live
    finally:
        stop_live_server(live)


@pytest.fixture
async def http(robust_live: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=robust_live.url, timeout=60) as client:
        yield client


async def _rows(http: httpx.AsyncClient, owner: TestUser) -> dict[str, str]:
    task = await http.post("/api/tasks", json={"title": "t"}, headers=owner.headers)
    chat = await http.post("/api/chats", json={}, headers=owner.headers)
    chat_id = chat.json()["data"]["id"]
    turn = await http.post(
        f"/api/chats/{chat_id}/messages",
        params={"stream": "false"},
        json={"content": "hi"},
        headers=owner.headers,
    )
    key = await http.post("/api/users/me/api-keys", json={"name": "k"}, headers=owner.headers)
    knowledge = await http.post("/api/knowledge", json={"name": "k"}, headers=owner.headers)
    uploaded = await http.post(
        "/api/files",
        files={"file": ("k.md", b"# K\n\nwords", "text/markdown")},
        headers=owner.headers,
    )
    assert uploaded.status_code == 201, uploaded.text
    return {
        "task_id": task.json()["data"]["id"],
        "chat_id": chat_id,
        "message_id": turn.json()["data"]["assistant_message"]["id"],
        "key_id": key.json()["data"]["id"],
        "file_id": uploaded.json()["data"]["id"],
        "knowledge_id": knowledge.json()["data"]["id"],
        "user_id": owner.id,
        "model_id": "offline:parley",
        "model": "offline:parley",
        # The job routes read no body: an oversized one is refused before any lookup.
        "job_id": str(uuid.uuid4()),
    }


def _writes(app_schema: dict[str, Any]) -> list[tuple[str, str, dict[str, Any] | None]]:
    return [
        (method, path, json_body_schema(operation))
        for method, path, operation in operations(app_schema)
        if method in ("POST", "PATCH", "PUT")
    ]


async def test_bodies_over_the_cap_are_413_on_every_write_route(
    small_cap_live: LiveServer, make_user: UserFactory
) -> None:
    owner = await make_user(admin=True)
    # Each write route, and whether it reads a body at all (one that reads none, such as
    # `POST /api/auth/guest`, is only refused by the declared length: it never reads the stream).
    paths = [
        (RouteKey(method, path), body is not None or path == "/api/auth/token")
        for method, path, body in _writes(small_cap_live.app.openapi())
    ] + [(RouteKey("POST", "/mcp"), True)]
    # Twice the cap: over every route's, uploads' (their own, plus framing) included.
    big = b'{"title": "' + b"x" * (2 * SMALL_CAP) + b'"}'

    async def chunked() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 8192):
            yield big[start : start + 8192]

    async with httpx.AsyncClient(base_url=small_cap_live.url, timeout=60) as http:
        rows = await _rows(http, owner)
        for key, reads_body in paths:
            url = key.url(rows)
            form = key.path == "/api/auth/token"
            kind = "application/x-www-form-urlencoded" if form else "application/json"
            headers = {**owner.headers, "Content-Type": kind}
            for content in (big, chunked()) if reads_body else (big,):
                response = await http.request(key.method, url, content=content, headers=headers)
                assert response.status_code == 413, (str(key), response.text[:300])
                if not url.startswith(("/v1", "/mcp")):
                    assert assert_envelope_error(response, 413) == "payload_too_large"


async def test_deep_and_undecodable_json_is_422(http: httpx.AsyncClient, user: TestUser) -> None:
    deep = b'{"title": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    for content in (deep, b"\xff\xfe\xfa not utf-8", b'{"title": "unterminated'):
        for path in ("/api/tasks", "/api/auth/register", "/v1/chat/completions"):
            response = await http.post(
                path,
                content=content,
                headers={**user.headers, "Content-Type": "application/json"},
            )
            if path.startswith("/v1"):
                assert response.status_code in (400, 422), response.text[:300]
                assert "error" in response.json()
            else:
                assert assert_envelope_error(response, 422) == "validation_error"


async def test_a_one_megabyte_message_is_taken_and_one_more_character_is_not(
    http: httpx.AsyncClient, user: TestUser
) -> None:
    chat = (await http.post("/api/chats", json={}, headers=user.headers)).json()["data"]
    content = ("lorem ipsum " * 90_000)[:1_000_000]
    sent = await http.post(
        f"/api/chats/{chat['id']}/messages",
        params={"stream": "false"},
        json={"content": content},
        headers=user.headers,
    )
    assert sent.status_code == 201, sent.text[:300]
    stored = sent.json()["data"]["user_message"]["parts"][0]["text"]
    assert stored == content
    assert sent.json()["data"]["assistant_message"]["status"] == "complete"
    refused = await http.post(
        f"/api/chats/{chat['id']}/messages",
        params={"stream": "false"},
        json={"content": content + "x"},
        headers=user.headers,
    )
    assert assert_envelope_error(refused, 422) == "validation_error"


async def test_nul_and_lone_surrogates_in_every_string_field(
    robust_live: LiveServer, http: httpx.AsyncClient, make_user: UserFactory
) -> None:
    owner = await make_user(admin=True)
    rows = await _rows(http, owner)
    schema = robust_live.app.openapi()
    samples = SampleBuilder(schema)
    checked = 0
    for method, path, body_schema in _writes(schema):
        if body_schema is None:
            continue
        url = RouteKey(method, path).url(rows)
        body = samples.sample(body_schema, full=True)
        for field in string_paths(body):
            for label, text in HOSTILE_TEXT.items():
                sent = replaced(body, field, text)
                # ensure_ascii keeps the lone surrogate as a `\ud800` escape: valid JSON text.
                response = await http.request(
                    method,
                    url,
                    params={"stream": "false"},
                    content=json.dumps(sent, ensure_ascii=True).encode(),
                    headers={**owner.headers, "Content-Type": "application/json"},
                )
                checked += 1
                assert response.status_code < 500, (url, field, label, response.text[:300])
                if path.startswith("/v1"):
                    # Not stored: OpenAI takes such text too; a clear 4xx is as good.
                    assert response.status_code == 200 or response.status_code >= 400, (
                        response.text[:300]
                    )
                else:
                    # Credentials are checked, never stored as text: a wrong one may say so.
                    secret = any(word in str(field[-1]) for word in ("password", "token"))
                    allowed = (401, 409, 422) if secret else (422,)
                    assert _is_clear_refusal(response, url, allowed), (
                        url,
                        field,
                        label,
                        response.status_code,
                        response.text[:300],
                    )
    assert checked >= 20
    # And in every string query parameter of every GET.
    for method, path, operation in operations(schema):
        if method != "GET":
            continue
        for parameter in operation.get("parameters", []):
            if parameter["in"] != "query" or not _is_string(samples, parameter["schema"]):
                continue
            for label, text in HOSTILE_TEXT.items():
                encoded = quote(text.encode("utf-8", "surrogatepass"), safe="")
                response = await http.get(
                    f"{RouteKey(method, path).url(rows)}?{parameter['name']}={encoded}",
                    headers=owner.headers,
                )
                where = (path, parameter["name"], label, response.text[:300])
                if label == "nul":
                    assert assert_envelope_error(response, 422) == "validation_error", where
                else:
                    # Undecodable bytes in a URL arrive as U+FFFD (storable): a page, or a 4xx.
                    assert response.status_code < 500, where
                checked += 1


def _is_string(samples: SampleBuilder, node: dict[str, Any]) -> bool:
    node = samples.resolve(node)
    kinds = {samples.resolve(branch).get("type") for branch in node.get("anyOf", [node])}
    return (
        "string" in kinds
        and not node.get("format")
        and not any(samples.resolve(branch).get("format") for branch in node.get("anyOf", []))
        and "enum" not in node
    )


def _list_routes(schema: dict[str, Any]) -> list[str]:
    return [
        path
        for method, path, operation in operations(schema)
        if method == "GET" and any(p["name"] == "limit" for p in operation.get("parameters", []))
    ]


async def test_bad_limits_and_cursors_are_422_on_every_list(
    robust_live: LiveServer, http: httpx.AsyncClient, make_user: UserFactory
) -> None:
    owner = await make_user(admin=True)
    rows = await _rows(http, owner)
    for _ in range(3):
        await http.post("/api/tasks", json={"title": "more"}, headers=owner.headers)
    lists = _list_routes(robust_live.app.openapi())
    assert "/api/tasks" in lists
    assert "/api/chats/{chat_id}/messages" in lists
    real = await http.get("/api/tasks", params={"limit": 1}, headers=owner.headers)
    genuine = real.json()["data"]["next_cursor"]
    assert genuine
    raw = base64.urlsafe_b64decode(genuine + "=" * (-len(genuine) % 4))
    tampered = base64.urlsafe_b64encode(raw.replace(b"-created_at", b"-due_at")).decode()
    payload = json.dumps(["created_at", "2020-01-01T00:00:00+00:00", rows["task_id"]]).encode()
    unsigned = base64.urlsafe_b64encode(payload + b".0000000000000000").decode()
    # A cursor signed with another secret: one from before the secret was rotated.
    stale = CursorCodec("an old secret that is no longer used " * 2).encode(
        SORT_KEYS[TaskSort.CREATED_AT_DESC], None, uuid.UUID(rows["task_id"])
    )
    bad_limits = ["-1", "0", "101", str(10**30), "-" + str(10**30), "1e3", "abc", ""]
    bad_cursors = [
        "garbage",
        "%%%",
        "A" * 1025,
        tampered,
        unsigned,
        stale,
        base64.urlsafe_b64encode(b"[1,2,3].abc").decode(),
    ]
    for path in lists:
        url = RouteKey("GET", path).url(rows)
        for limit in bad_limits:
            response = await http.get(url, params={"limit": limit}, headers=owner.headers)
            if limit == "":
                assert response.status_code in (200, 422), response.text
                continue
            assert assert_envelope_error(response, 422) == "validation_error", (path, limit)
        for cursor in bad_cursors:
            response = await http.get(url, params={"cursor": cursor}, headers=owner.headers)
            assert assert_envelope_error(response, 422) == "validation_error", (path, cursor)
    # A genuine cursor of one list handed to another is refused or pages nothing of the first.
    for path in lists:
        response = await http.get(
            RouteKey("GET", path).url(rows), params={"cursor": genuine}, headers=owner.headers
        )
        assert response.status_code in (200, 422), (path, response.text)


async def test_ids_that_are_not_uuids_are_422(
    robust_live: LiveServer, http: httpx.AsyncClient, make_user: UserFactory
) -> None:
    owner = await make_user(admin=True)
    rows = await _rows(http, owner)
    bad_ids = ["not-a-uuid", "1", "' OR 1=1 --", "x" * 2000, "01a2b3c4", "%00"]
    nil = "00000000-0000-0000-0000-000000000000"
    checked = 0
    for key in route_table(robust_live.app):
        uuid_params = [p for p in key.params if p in RESOURCE_PARAMS | {"user_id"}]
        for param in uuid_params:
            for bad in [*bad_ids, nil]:
                url = key.url({**rows, param: httpx.URL(f"/{bad}").raw_path.decode()[1:]})
                response = await http.request(
                    key.method,
                    url,
                    json={} if key.method in ("POST", "PATCH") else None,
                    headers=owner.headers,
                )
                checked += 1
                if bad == nil:
                    assert response.status_code in (404, 422), (str(key), response.text)
                else:
                    assert assert_envelope_error(response, (404, 422)) in (
                        "validation_error",
                        "not_found",
                    ), (str(key), bad)
                    if response.status_code == 404:
                        # only a path the router cannot match at all (a `/` inside the id)
                        assert "/" in bad
    assert checked >= 50
    for name, path in (
        ("leaf_id", f"/api/chats/{rows['chat_id']}/messages"),
        ("api_key_id", "/api/usage/records"),
    ):
        for bad in bad_ids:
            response = await http.get(path, params={name: bad}, headers=owner.headers)
            assert assert_envelope_error(response, 422) == "validation_error"


def test_streams_document_each_event(robust_live: LiveServer, tmp_path: Path) -> None:
    """Regression: the stream routes documented `{"type": "string"}` as the schema of each
    event, which schemathesis (rightly, for OpenAPI 3.1) checked every event object against."""
    schema = robust_live.app.openapi()
    for method, path, operation in operations(schema):
        content = operation["responses"].get("200", {}).get("content", {})
        if "text/event-stream" in content and path.startswith("/api"):
            event = content["text/event-stream"]["itemSchema"]
            assert event["type"] == "object"
            assert {"id", "data"} <= set(event["required"]), (method, path)
