"""Mass assignment: ownership, privilege, budget and upstream fields added to every write body of
the OpenAPI schema (at the top level and inside every nested object) are refused, and the stored
objects stay as they were; no caller can point a request at another upstream URL.

The write bodies come from the schema: each operation's body is first sent as a valid sample (it
must not be refused, so a later refusal is the added field's doing), then with each field added.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.openai_upstream import FakeOpenAI
from tests.fixtures.accounts import TestUser, UserFactory
from tests.fixtures.routes import (
    RouteKey,
    SampleBuilder,
    get_at,
    json_body_schema,
    object_paths,
    operations,
    replaced,
)
from tests.fixtures.servers import LiveServer

CANARY = "http://127.0.0.1:9/v1"  # replaced by the canary server's URL in the test
SMUGGLED: dict[str, Any] = {
    "user_id": "00000000-0000-7000-8000-000000000001",
    "owner_id": "00000000-0000-7000-8000-000000000001",
    "id": "00000000-0000-7000-8000-000000000002",
    "is_admin": True,
    "is_active": False,
    "is_guest": False,
    "monthly_budget_usd": 1_000_000,
    "created_at": "2000-01-01T00:00:00Z",
    "api_base": CANARY,
    "base_url": CANARY,
    "api_key": "sk-smuggled",
    "status": "complete",
    "role": "system",
}
STREAM_OPERATIONS = ("/messages", "/regenerate")


@pytest.fixture(scope="module")
def canary() -> Iterator[FakeOpenAI]:
    """An OpenAI-compatible server nobody should ever reach: it records what reaches it."""
    fake = FakeOpenAI.start()
    try:
        yield fake
    finally:
        fake.stop()


async def _rows(http: httpx.AsyncClient, owner: TestUser) -> dict[str, str]:
    task = await http.post("/api/tasks", json={"title": "mine"}, headers=owner.headers)
    chat = await http.post("/api/chats", json={"title": "mine"}, headers=owner.headers)
    chat_id = chat.json()["data"]["id"]
    turn = await http.post(
        f"/api/chats/{chat_id}/messages",
        params={"stream": "false"},
        json={"content": "hello"},
        headers=owner.headers,
    )
    assert turn.status_code == 201, turn.text
    key = await http.post("/api/users/me/api-keys", json={"name": "k"}, headers=owner.headers)
    knowledge = await http.post("/api/knowledge", json={"name": "mine"}, headers=owner.headers)
    uploaded = await http.post(
        "/api/files",
        files={"file": ("mine.md", b"# Mine\n\nwords", "text/markdown")},
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
        "model_id": "offline:parley",
    }


async def _state(http: httpx.AsyncClient, admin: TestUser, rows: dict[str, str]) -> Any:
    """What any smuggled field could have changed: users (privileges, budgets), the caller's
    rows, and the catalog."""

    async def get(path: str) -> Any:
        response = await http.get(path, params={"limit": 100}, headers=admin.headers)
        assert response.status_code == 200, response.text
        return response.json()["data"]

    return {
        "users": await get("/api/admin/users"),
        "task": await get(f"/api/tasks/{rows['task_id']}"),
        "chats": await get("/api/chats"),
        "messages": await get(f"/api/chats/{rows['chat_id']}/messages"),
        "keys": await get("/api/users/me/api-keys"),
        "knowledge": await get(f"/api/knowledge/{rows['knowledge_id']}"),
        "models": await get("/api/models?include_disabled=true"),
    }


def _refused(response: httpx.Response, field: str, path: str) -> bool:
    """Refused as invalid: 422 in the envelope (REST), 400/422 in OpenAI's format (`/v1`)."""
    if path.startswith("/v1"):
        error = response.json().get("error") or {}
        named = field in str(error.get("param")) or field in str(error.get("message"))
        return response.status_code in (400, 422) and named
    if response.status_code != 422:
        return False
    details = response.json()["error"].get("details") or []
    return any(detail["field"].endswith(field) for detail in details)


async def test_smuggled_fields_are_refused_everywhere(
    robust_live: LiveServer, make_user: UserFactory, canary: FakeOpenAI
) -> None:
    admin, other = await make_user(admin=True), await make_user()
    smuggled = {
        key: (canary.base_url if value == CANARY else value) for key, value in SMUGGLED.items()
    }
    schema = robust_live.app.openapi()
    samples = SampleBuilder(schema)
    async with httpx.AsyncClient(base_url=robust_live.url, timeout=60) as http:
        rows = await _rows(http, admin)
        writes: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = []
        for method, path, operation in operations(schema):
            body_schema = json_body_schema(operation)
            if body_schema is None or method not in ("POST", "PATCH", "PUT"):
                continue
            url = RouteKey(method, path).url({**rows, "user_id": other.id, "model": "x"})
            writes.append((method, url, samples.sample(body_schema), body_schema))
        assert len(writes) >= 15, writes

        params = {"stream": "false"}
        # Each valid sample passes validation (a 422 may still come of a rule past the shape,
        # such as a wrong current password, but never for an unknown field).
        for method, url, body, _ in writes:
            response = await http.request(
                method, url, json=body, params=params, headers=admin.headers
            )
            assert response.status_code < 500, (url, body, response.text)
            assert "extra" not in response.text.lower(), (url, body, response.text)
        before = await _state(http, admin, rows)

        refusals = 0
        for method, url, body, body_schema in writes:
            targets = list(object_paths(body))
            for name, value in smuggled.items():
                for target in targets:
                    if name in samples.properties_at(body_schema, target):
                        continue  # a field the object really has (an admin's `is_admin`)
                    sent = replaced(body, target, {**get_at(body, target), name: value})
                    response = await http.request(
                        method, url, json=sent, params=params, headers=admin.headers
                    )
                    assert response.status_code < 500, (url, sent, response.text)
                    assert _refused(response, name, url), (url, json.dumps(sent), response.text)
                    refusals += 1
        assert refusals >= len(writes) * len(smuggled) // 2

        # The password grant is a form: unknown fields are ignored, and grant nothing.
        granted = await http.post(
            "/api/auth/token",
            data={
                "username": other_email(other),
                "password": "correct horse battery",
                **{"is_admin": "true", "user_id": admin.id, "scope": "admin"},
            },
        )
        assert granted.status_code == 200, granted.text
        me = await http.get(
            "/api/users/me",
            headers={"Authorization": f"Bearer {granted.json()['access_token']}"},
        )
        assert me.json()["data"]["id"] == other.id
        assert me.json()["data"]["is_admin"] is False

        after = await _state(http, admin, rows)
    assert after == before
    assert canary.script.requests == []


def other_email(user: TestUser) -> str:
    assert user.email is not None
    return user.email


async def test_no_caller_can_choose_the_upstream(
    robust_live: LiveServer, user: TestUser, canary: FakeOpenAI
) -> None:
    canary.script.reset()
    url = canary.base_url
    async with httpx.AsyncClient(base_url=robust_live.url, timeout=60) as http:
        chat = (await http.post("/api/chats", json={}, headers=user.headers)).json()["data"]
        attempts = [
            ("POST", "/api/chats", {"model_id": url}),
            ("POST", "/api/chats", {"model_id": f"openai:{url}"}),
            ("PATCH", f"/api/chats/{chat['id']}", {"model_id": f"openai:{url}"}),
            ("POST", f"/api/chats/{chat['id']}/messages", {"content": "hi", "model_id": url}),
            (
                "POST",
                "/v1/chat/completions",
                {"model": url, "messages": [{"role": "user", "content": "hi"}]},
            ),
            (
                "POST",
                "/v1/chat/completions",
                {"model": f"openai:{url}", "messages": [{"role": "user", "content": "hi"}]},
            ),
            (
                "POST",
                "/v1/chat/completions",
                {
                    "model": "offline:parley",
                    "messages": [{"role": "user", "content": "hi"}],
                    "extra_body": {"base_url": url},
                },
            ),
        ]
        for method, path, body in attempts:
            response = await http.request(
                method,
                path,
                json=body,
                params={"stream": "false"} if path.endswith("/messages") else None,
                headers={
                    **user.headers,
                    "X-Forwarded-Host": "127.0.0.1",
                    "OpenAI-Base-URL": url,
                    "X-Base-URL": url,
                },
            )
            assert 400 <= response.status_code < 500, (path, body, response.text)
        # Headers naming another server are ignored: the request runs where Parley says.
        plain = await http.post(
            "/v1/chat/completions",
            json={"model": "offline:parley", "messages": [{"role": "user", "content": "hi"}]},
            headers={**user.headers, "OpenAI-Base-URL": url, "X-Upstream-URL": url},
        )
        assert plain.status_code == 200, plain.text
    assert canary.script.requests == []
