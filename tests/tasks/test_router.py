"""Tasks over HTTP: create, get, update and delete, with their validation and error cases."""

from __future__ import annotations

import uuid
from datetime import datetime

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from parley.tasks.models import TaskTag
from tests.fixtures.accounts import TestUser
from tests.fixtures.errors import assert_error
from tests.fixtures.tasks import TaskFactory

TASK_FIELDS = {
    "id",
    "title",
    "description",
    "completed",
    "completed_at",
    "priority",
    "due_at",
    "tags",
    "recurrence",
    "remind_at",
    "created_at",
    "updated_at",
}


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# -- create ------------------------------------------------------------------------------------


async def test_create_with_defaults(client: httpx.AsyncClient, user: TestUser) -> None:
    response = await client.post("/api/tasks", json={"title": "  Buy milk  "}, headers=user.headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["trace_id"] == response.headers["x-trace-id"]
    task = body["data"]
    assert set(task) == TASK_FIELDS
    assert uuid.UUID(task["id"]).version == 7
    assert task["title"] == "Buy milk"
    assert task["description"] is None
    assert task["completed"] is False
    assert task["completed_at"] is None
    assert task["priority"] == "medium"
    assert task["due_at"] is None
    assert task["tags"] == []
    assert task["created_at"].endswith("Z")
    assert task["created_at"] == task["updated_at"]


async def test_create_with_every_field(client: httpx.AsyncClient, user: TestUser) -> None:
    response = await client.post(
        "/api/tasks",
        json={
            "title": "Ship it",
            "description": "Release 1.0",
            "priority": "high",
            "due_at": "2030-05-01T12:00:00+02:00",
            "tags": ["work", " release ", "work"],
            "completed": True,
        },
        headers=user.headers,
    )
    assert response.status_code == 201, response.text
    task = response.json()["data"]
    assert task["description"] == "Release 1.0"
    assert task["priority"] == "high"
    assert task["due_at"] == "2030-05-01T10:00:00Z"  # stored and answered in UTC
    assert task["tags"] == ["release", "work"]  # stripped, de-duplicated, sorted
    assert task["completed"] is True
    assert parse_time(task["completed_at"]) >= parse_time(task["created_at"])

    fetched = await client.get(f"/api/tasks/{task['id']}", headers=user.headers)
    assert fetched.json()["data"] == task


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "body.title"),
        ({"title": ""}, "body.title"),
        ({"title": "   "}, "body.title"),
        ({"title": "x" * 501}, "body.title"),
        ({"title": "nul\x00byte"}, "body.title"),
        ({"title": "t", "description": "d" * 10_001}, "body.description"),
        ({"title": "t", "description": "nul\x00"}, "body.description"),
        ({"title": "t", "priority": "urgent"}, "body.priority"),
        ({"title": "t", "due_at": "2030-01-01T10:00:00"}, "body.due_at"),
        ({"title": "t", "due_at": "tomorrow"}, "body.due_at"),
        ({"title": "t", "tags": [f"t{i}" for i in range(21)]}, "body.tags"),
        ({"title": "t", "tags": ["x" * 51]}, "body.tags.0"),
        ({"title": "t", "tags": [""]}, "body.tags.0"),
        ({"title": "t", "tags": ["a\x00b"]}, "body.tags.0"),
        ({"title": "t", "owner_id": str(uuid.uuid4())}, "body.owner_id"),
        ({"title": "t", "completed": "maybe"}, "body.completed"),
    ],
)
async def test_create_refuses_invalid_input(
    client: httpx.AsyncClient, user: TestUser, body: dict[str, object], field: str
) -> None:
    response = await client.post("/api/tasks", json=body, headers=user.headers)
    error = assert_error(response, 422, "validation_error")["error"]
    assert isinstance(error, dict)
    assert field in [detail["field"] for detail in error["details"]]


async def test_create_accepts_the_limits(client: httpx.AsyncClient, user: TestUser) -> None:
    response = await client.post(
        "/api/tasks",
        json={
            "title": "é" * 500,
            "description": "d" * 10_000,
            "tags": [f"{i:02d}" + "x" * 48 for i in range(20)],
        },
        headers=user.headers,
    )
    assert response.status_code == 201, response.text
    task = response.json()["data"]
    assert len(task["title"]) == 500
    assert len(task["tags"]) == 20


async def test_create_requires_authentication(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/tasks", json={"title": "t"})
    assert_error(response, 401, "not_authenticated")
    response = await client.post(
        "/api/tasks", json={"title": "t"}, headers={"Authorization": "Bearer nope"}
    )
    assert_error(response, 401, "invalid_token")


# -- get -----------------------------------------------------------------------------------------


async def test_get_unknown_or_malformed_id(client: httpx.AsyncClient, user: TestUser) -> None:
    assert_error(
        await client.get(f"/api/tasks/{uuid.uuid4()}", headers=user.headers), 404, "not_found"
    )
    assert_error(
        await client.get("/api/tasks/not-a-uuid", headers=user.headers), 422, "validation_error"
    )
    assert_error(await client.get(f"/api/tasks/{uuid.uuid4()}"), 401, "not_authenticated")


async def test_api_key_sees_the_same_tasks(
    client: httpx.AsyncClient, user: TestUser, make_task: TaskFactory
) -> None:
    task = await make_task(user)
    created = await client.post(
        "/api/users/me/api-keys", json={"name": "script"}, headers=user.headers
    )
    key = created.json()["data"]["key"]
    response = await client.get(
        f"/api/tasks/{task['id']}", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200
    assert response.json()["data"] == task


# -- update --------------------------------------------------------------------------------------


async def test_update_changes_only_the_fields_sent(
    client: httpx.AsyncClient, user: TestUser, make_task: TaskFactory
) -> None:
    task = await make_task(
        user, description="keep me", priority="low", due_at="2030-01-01T00:00:00Z", tags=["a"]
    )
    response = await client.patch(
        f"/api/tasks/{task['id']}", json={"title": "Renamed"}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    updated = response.json()["data"]
    assert updated["title"] == "Renamed"
    for field in ("description", "priority", "due_at", "tags", "completed", "created_at"):
        assert updated[field] == task[field]
    assert parse_time(updated["updated_at"]) > parse_time(task["updated_at"])


async def test_update_every_field_and_clear_the_nullable_ones(
    client: httpx.AsyncClient, user: TestUser, make_task: TaskFactory
) -> None:
    task = await make_task(user, description="old", due_at="2030-01-01T00:00:00Z", tags=["a", "b"])
    response = await client.patch(
        f"/api/tasks/{task['id']}",
        json={"description": None, "due_at": None, "priority": "high", "tags": ["b", "c"]},
        headers=user.headers,
    )
    updated = response.json()["data"]
    assert updated["description"] is None
    assert updated["due_at"] is None
    assert updated["priority"] == "high"
    assert updated["tags"] == ["b", "c"]

    cleared = await client.patch(
        f"/api/tasks/{task['id']}", json={"tags": []}, headers=user.headers
    )
    assert cleared.json()["data"]["tags"] == []


async def test_update_tags_alone_moves_updated_at(
    client: httpx.AsyncClient, user: TestUser, make_task: TaskFactory, app: FastAPI
) -> None:
    task = await make_task(user, tags=["a"])
    response = await client.patch(
        f"/api/tasks/{task['id']}", json={"tags": ["a", "z"]}, headers=user.headers
    )
    updated = response.json()["data"]
    assert updated["tags"] == ["a", "z"]
    assert parse_time(updated["updated_at"]) > parse_time(task["updated_at"])
    async with app.state.database.sessionmaker() as session:
        count = await session.scalar(select(func.count()).select_from(TaskTag))
    assert count == 2


async def test_completing_records_and_clears_completed_at(
    client: httpx.AsyncClient, user: TestUser, make_task: TaskFactory
) -> None:
    task = await make_task(user)
    url = f"/api/tasks/{task['id']}"
    done = (await client.patch(url, json={"completed": True}, headers=user.headers)).json()["data"]
    assert done["completed"] is True
    assert done["completed_at"] is not None

    again = (await client.patch(url, json={"completed": True}, headers=user.headers)).json()
    assert again["data"]["completed_at"] == done["completed_at"]  # the first completion stays

    undone = (await client.patch(url, json={"completed": False}, headers=user.headers)).json()
    assert undone["data"]["completed"] is False
    assert undone["data"]["completed_at"] is None


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"title": None}, "body.title"),
        ({"completed": None}, "body.completed"),
        ({"priority": None}, "body.priority"),
        ({"tags": None}, "body.tags"),
        ({"title": ""}, "body.title"),
        ({"description": "\x00"}, "body.description"),
        ({"due_at": "2030-01-01"}, "body.due_at"),
        ({"due_at": "0001-01-01T00:00:00+05:00"}, "body.due_at"),
        ({"id": str(uuid.uuid4())}, "body.id"),
        ({"completed_at": "2030-01-01T00:00:00Z"}, "body.completed_at"),
    ],
)
async def test_update_refuses_invalid_input(
    client: httpx.AsyncClient,
    user: TestUser,
    make_task: TaskFactory,
    body: dict[str, object],
    field: str,
) -> None:
    task = await make_task(user)
    response = await client.patch(f"/api/tasks/{task['id']}", json=body, headers=user.headers)
    error = assert_error(response, 422, "validation_error")["error"]
    assert isinstance(error, dict)
    assert field in [detail["field"] for detail in error["details"]]
    unchanged = await client.get(f"/api/tasks/{task['id']}", headers=user.headers)
    assert unchanged.json()["data"] == task


async def test_empty_update_changes_nothing(
    client: httpx.AsyncClient, user: TestUser, make_task: TaskFactory
) -> None:
    task = await make_task(user)
    response = await client.patch(f"/api/tasks/{task['id']}", json={}, headers=user.headers)
    assert response.status_code == 200
    assert response.json()["data"] == task


async def test_update_unknown_task_or_without_credentials(
    client: httpx.AsyncClient, user: TestUser, make_task: TaskFactory
) -> None:
    response = await client.patch(
        f"/api/tasks/{uuid.uuid4()}", json={"title": "x"}, headers=user.headers
    )
    assert_error(response, 404, "not_found")
    task = await make_task(user)
    assert_error(
        await client.patch(f"/api/tasks/{task['id']}", json={"title": "x"}),
        401,
        "not_authenticated",
    )


# -- delete --------------------------------------------------------------------------------------


async def test_delete_removes_the_task_and_its_tags(
    client: httpx.AsyncClient, user: TestUser, make_task: TaskFactory, app: FastAPI
) -> None:
    task = await make_task(user, tags=["a", "b"])
    keep = await make_task(user, tags=["a"])
    response = await client.delete(f"/api/tasks/{task['id']}", headers=user.headers)
    assert response.status_code == 204
    assert response.content == b""
    assert_error(
        await client.get(f"/api/tasks/{task['id']}", headers=user.headers), 404, "not_found"
    )
    assert_error(
        await client.delete(f"/api/tasks/{task['id']}", headers=user.headers), 404, "not_found"
    )
    async with app.state.database.sessionmaker() as session:
        tags = (await session.execute(select(TaskTag.task_id, TaskTag.tag))).all()
    assert [(str(task_id), tag) for task_id, tag in tags] == [(keep["id"], "a")]


async def test_delete_unknown_malformed_or_anonymous(
    client: httpx.AsyncClient, user: TestUser, make_task: TaskFactory
) -> None:
    assert_error(
        await client.delete(f"/api/tasks/{uuid.uuid4()}", headers=user.headers), 404, "not_found"
    )
    assert_error(
        await client.delete("/api/tasks/123", headers=user.headers), 422, "validation_error"
    )
    task = await make_task(user)
    assert_error(await client.delete(f"/api/tasks/{task['id']}"), 401, "not_authenticated")
    assert (await client.get(f"/api/tasks/{task['id']}", headers=user.headers)).status_code == 200


async def test_openapi_documents_every_task_route(client: httpx.AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    operations = {
        operation["operationId"]: (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if path.startswith("/api/tasks")
    }
    assert set(operations) == {
        "tasks-create-task",
        "tasks-list-tasks",
        "tasks-get-task",
        "tasks-update-task",
        "tasks-delete-task",
    }
    for _path, _method, operation in operations.values():
        assert operation["summary"]
        assert "401" in operation["responses"]
        assert "422" in operation["responses"]
    assert "404" in operations["tasks-get-task"][2]["responses"]
    list_parameters = {p["name"] for p in operations["tasks-list-tasks"][2]["parameters"]}
    assert list_parameters >= {
        "completed",
        "priority",
        "tag",
        "due_before",
        "due_after",
        "q",
        "sort",
        "limit",
        "cursor",
    }
