"""Fixtures for the task tests: `make_task` creates a task through the API, as a given user."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from tests.conftest import TestUser

TaskFactory = Callable[..., Awaitable[dict[str, Any]]]


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
