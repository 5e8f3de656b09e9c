"""Listing tasks: every filter, every sort (nulls last), text search, and keyset paging that
loses and repeats nothing, also while tasks are added between pages."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fixtures.accounts import TestUser
from tests.fixtures.errors import assert_error
from tests.fixtures.tasks import TaskFactory


async def list_ids(client: httpx.AsyncClient, user: TestUser, **params: Any) -> list[str]:
    """Every id the list answers (following cursors), in order."""
    ids: list[str] = []
    cursor: str | None = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/tasks", params=query, headers=user.headers)
        assert response.status_code == 200, response.text
        page = response.json()["data"]
        ids.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return ids


@pytest.fixture
async def catalog(user: TestUser, make_task: TaskFactory) -> dict[str, dict[str, Any]]:
    """Five tasks with varied fields, created in this order (so `created_at` ascends)."""
    return {
        "report": await make_task(
            user,
            "Write the quarterly REPORT",
            priority="high",
            due_at="2030-03-01T09:00:00Z",
            tags=["work"],
        ),
        "milk": await make_task(
            user, "Buy milk", description="Semi-skimmed, 2 litres", priority="low", tags=["home"]
        ),
        "dentist": await make_task(
            user,
            "Dentist",
            description="Call 100% before noon",
            due_at="2030-01-15T08:00:00Z",
            tags=["home", "health"],
        ),
        "taxes": await make_task(
            user,
            "File taxes",
            priority="high",
            due_at="2030-04-15T23:59:00Z",
            tags=["home", "work"],
            completed=True,
        ),
        "plants": await make_task(user, "Water_plants", priority="low"),
    }


def ids_of(catalog: dict[str, dict[str, Any]], *names: str) -> list[str]:
    return [catalog[name]["id"] for name in names]


async def test_default_order_is_newest_first(
    client: httpx.AsyncClient, user: TestUser, catalog: dict[str, dict[str, Any]]
) -> None:
    response = await client.get("/api/tasks", headers=user.headers)
    page = response.json()["data"]
    assert [item["id"] for item in page["items"]] == ids_of(
        catalog, "plants", "taxes", "dentist", "milk", "report"
    )
    assert page["next_cursor"] is None
    assert page["items"][1] == catalog["taxes"]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"completed": "true"}, ["taxes"]),
        ({"completed": "false"}, ["plants", "dentist", "milk", "report"]),
        ({"priority": "high"}, ["taxes", "report"]),
        ({"priority": "medium"}, ["dentist"]),
        ({"priority": "low"}, ["plants", "milk"]),
        ({"tag": "home"}, ["taxes", "dentist", "milk"]),
        ({"tag": "health"}, ["dentist"]),
        ({"tag": "Home"}, []),
        ({"tag": "nothing"}, []),
        ({"due_before": "2030-03-01T09:00:00Z"}, ["dentist"]),
        ({"due_before": "2030-03-01T09:00:01Z"}, ["dentist", "report"]),
        ({"due_after": "2030-03-01T09:00:00Z"}, ["taxes"]),
        ({"due_after": "2030-03-01T10:00:00+02:00"}, ["taxes", "report"]),
        (
            {"due_after": "2030-01-01T00:00:00Z", "due_before": "2030-04-01T00:00:00Z"},
            ["dentist", "report"],
        ),
        ({"q": "report"}, ["report"]),
        ({"q": "SEMI-skimmed"}, ["milk"]),
        ({"q": "100%"}, ["dentist"]),
        ({"q": "%"}, ["dentist"]),
        ({"q": "_"}, ["plants"]),
        ({"q": "I"}, ["taxes", "dentist", "milk", "report"]),
        ({"q": "nowhere"}, []),
        ({"tag": "home", "completed": "false"}, ["dentist", "milk"]),
        ({"tag": "work", "priority": "high", "q": "taxes"}, ["taxes"]),
        ({"priority": "low", "due_before": "2031-01-01T00:00:00Z"}, []),
    ],
)
async def test_filters(
    client: httpx.AsyncClient,
    user: TestUser,
    catalog: dict[str, dict[str, Any]],
    params: dict[str, str],
    expected: list[str],
) -> None:
    assert await list_ids(client, user, **params) == ids_of(catalog, *expected)


@pytest.mark.parametrize(
    ("sort", "expected"),
    [
        ("created_at", ["report", "milk", "dentist", "taxes", "plants"]),
        ("-created_at", ["plants", "taxes", "dentist", "milk", "report"]),
        # Without a due date last in both directions, ties by id (creation order).
        ("due_at", ["dentist", "report", "taxes", "milk", "plants"]),
        ("-due_at", ["taxes", "report", "dentist", "plants", "milk"]),
        ("priority", ["milk", "plants", "dentist", "report", "taxes"]),
        ("-priority", ["taxes", "report", "dentist", "plants", "milk"]),
    ],
)
@pytest.mark.parametrize("limit", [1, 2, 100])
async def test_sorts_page_by_page(
    client: httpx.AsyncClient,
    user: TestUser,
    catalog: dict[str, dict[str, Any]],
    sort: str,
    expected: list[str],
    limit: int,
) -> None:
    assert await list_ids(client, user, sort=sort, limit=limit) == ids_of(catalog, *expected)


async def test_filters_and_sort_page_together(
    client: httpx.AsyncClient, user: TestUser, catalog: dict[str, dict[str, Any]]
) -> None:
    ids = await list_ids(client, user, tag="home", sort="due_at", limit=1)
    assert ids == ids_of(catalog, "dentist", "taxes", "milk")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"sort": "title"}, "query.sort"),
        ({"sort": "-updated_at"}, "query.sort"),
        ({"priority": "urgent"}, "query.priority"),
        ({"completed": "perhaps"}, "query.completed"),
        ({"due_before": "2030-01-01T00:00:00"}, "query.due_before"),
        ({"due_after": "soon"}, "query.due_after"),
        ({"q": ""}, "query.q"),
        ({"q": "x" * 201}, "query.q"),
        ({"q": "a\x00b"}, "query.q"),
        ({"tag": "a\x00"}, "query.tag"),
        ({"tag": "t" * 51}, "query.tag"),
        ({"limit": "0"}, "query.limit"),
        ({"limit": "101"}, "query.limit"),
        ({"cursor": "not-a-cursor"}, "query.cursor"),
    ],
)
async def test_invalid_list_parameters(
    client: httpx.AsyncClient, user: TestUser, params: dict[str, str], field: str
) -> None:
    response = await client.get("/api/tasks", params=params, headers=user.headers)
    error = assert_error(response, 422, "validation_error")["error"]
    assert isinstance(error, dict)
    assert field in [detail["field"] for detail in error["details"]]


async def test_a_cursor_is_bound_to_its_sort(
    client: httpx.AsyncClient, user: TestUser, catalog: dict[str, dict[str, Any]]
) -> None:
    first = await client.get(
        "/api/tasks", params={"sort": "priority", "limit": 2}, headers=user.headers
    )
    cursor = first.json()["data"]["next_cursor"]
    assert cursor
    other = await client.get(
        "/api/tasks", params={"sort": "due_at", "cursor": cursor}, headers=user.headers
    )
    assert_error(other, 422, "validation_error")
    forged = cursor[:-2] + ("AA" if not cursor.endswith("AA") else "BB")
    tampered = await client.get(
        "/api/tasks", params={"sort": "priority", "cursor": forged}, headers=user.headers
    )
    assert_error(tampered, 422, "validation_error")


async def test_list_requires_authentication(client: httpx.AsyncClient) -> None:
    assert_error(await client.get("/api/tasks"), 401, "not_authenticated")


async def test_empty_list(client: httpx.AsyncClient, user: TestUser) -> None:
    response = await client.get("/api/tasks", headers=user.headers)
    assert response.json()["data"] == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("sort", ["-created_at", "created_at", "due_at", "-due_at", "-priority"])
async def test_paging_with_inserts_in_between_loses_and_repeats_nothing(
    client: httpx.AsyncClient, user: TestUser, make_task: TaskFactory, sort: str
) -> None:
    priorities = ["low", "medium", "high"]
    originals = []
    for index in range(12):
        due = f"2030-01-{index % 5 + 1:02d}T00:00:00Z" if index % 3 else None
        task = await make_task(user, f"task {index}", priority=priorities[index % 3], due_at=due)
        originals.append(task["id"])
    expected_order = await list_ids(client, user, sort=sort, limit=100)
    assert sorted(expected_order) == sorted(originals)

    seen: list[str] = []
    added: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"sort": sort, "limit": 5}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/api/tasks", params=params, headers=user.headers)
        page = response.json()["data"]
        seen.extend(item["id"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        # Tasks added while paging, sorting before, among and after the rows still to come.
        for offset, due in enumerate(["2030-01-03T00:00:00Z", None, "2029-01-01T00:00:00Z"]):
            task = await make_task(
                user, f"late {len(added)}", priority=priorities[offset], due_at=due
            )
            added.append(task["id"])

    assert len(seen) == len(set(seen)), "an item was repeated"
    assert set(originals) <= set(seen), "an item was lost"
    assert set(seen) <= set(originals) | set(added)
    # The original tasks keep their relative order across pages.
    assert [task_id for task_id in seen if task_id in set(originals)] == expected_order
