"""Fixtures for the task tests: `make_task` creates a task through the API, as a given user."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.fixtures.accounts import TestUser
from tests.fixtures.tasks import TaskFactory


@pytest.fixture
def make_task(client: httpx.AsyncClient) -> TaskFactory:
    """`await make_task(user, title="...", **fields)`: a task created over HTTP, as returned."""

    async def factory(owner: TestUser, title: str = "A task", **fields: Any) -> dict[str, Any]:
        response = await client.post(
            "/api/tasks", json={"title": title, **fields}, headers=owner.headers
        )
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()["data"]
        return data

    return factory
