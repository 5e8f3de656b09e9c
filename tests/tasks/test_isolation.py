"""One user's tasks are invisible to another on every task route: not listed, and a 404 (never a
403) on get, update, complete and delete, leaving the task untouched."""

from __future__ import annotations

import httpx

from tests.fixtures.accounts import TestUser
from tests.fixtures.errors import assert_error
from tests.fixtures.tasks import TaskFactory


async def test_another_users_task_is_not_found_on_every_route(
    client: httpx.AsyncClient, user: TestUser, other_user: TestUser, make_task: TaskFactory
) -> None:
    task = await make_task(user, "Private", tags=["secret"], due_at="2030-01-01T00:00:00Z")
    url = f"/api/tasks/{task['id']}"
    intruder = other_user.headers

    assert_error(await client.get(url, headers=intruder), 404, "not_found")
    assert_error(
        await client.patch(url, json={"title": "Mine now"}, headers=intruder), 404, "not_found"
    )
    assert_error(
        await client.patch(url, json={"completed": True}, headers=intruder), 404, "not_found"
    )
    assert_error(await client.delete(url, headers=intruder), 404, "not_found")

    owner_view = await client.get(url, headers=user.headers)
    assert owner_view.status_code == 200
    assert owner_view.json()["data"] == task


async def test_lists_show_only_the_callers_tasks(
    client: httpx.AsyncClient, user: TestUser, other_user: TestUser, make_task: TaskFactory
) -> None:
    mine = await make_task(user, "Mine", tags=["shared"], priority="high")
    theirs = await make_task(
        other_user, "Theirs", tags=["shared"], priority="high", due_at="2030-01-01T00:00:00Z"
    )
    for params in (
        {},
        {"tag": "shared"},
        {"priority": "high"},
        {"q": "Theirs"},
        {"due_before": "2031-01-01T00:00:00Z"},
        {"sort": "due_at"},
        {"completed": "false"},
    ):
        response = await client.get("/api/tasks", params=params, headers=user.headers)
        ids = [item["id"] for item in response.json()["data"]["items"]]
        assert theirs["id"] not in ids, params

    response = await client.get("/api/tasks", params={"tag": "shared"}, headers=other_user.headers)
    assert [item["id"] for item in response.json()["data"]["items"]] == [theirs["id"]]
    assert mine["id"] not in response.text


async def test_a_cursor_does_not_reach_into_another_users_list(
    client: httpx.AsyncClient, user: TestUser, other_user: TestUser, make_task: TaskFactory
) -> None:
    for index in range(3):
        await make_task(user, f"mine {index}")
    first = await client.get("/api/tasks", params={"limit": 1}, headers=user.headers)
    cursor = first.json()["data"]["next_cursor"]
    response = await client.get(
        "/api/tasks", params={"limit": 10, "cursor": cursor}, headers=other_user.headers
    )
    assert response.status_code == 200
    assert response.json()["data"] == {"items": [], "next_cursor": None}
