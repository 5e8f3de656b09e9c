"""Knowledge-test helpers: uploading through the API, waiting for ingestion, searching (the
`worker` fixture that ingests is the root conftest's)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.fixtures.accounts import TestUser
from tests.fixtures.polling import wait_for

Uploader = Callable[..., Any]


async def upload(
    client: httpx.AsyncClient,
    user: TestUser,
    name: str,
    content: bytes,
    media_type: str = "application/octet-stream",
    **form: str,
) -> httpx.Response:
    """`POST /api/files` with one file."""
    return await client.post(
        "/api/files",
        files={"file": (name, content, media_type)},
        data=form,
        headers=user.headers,
    )


async def file_of(client: httpx.AsyncClient, user: TestUser, file_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/files/{file_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def settled(client: httpx.AsyncClient, user: TestUser, file_id: str) -> dict[str, Any]:
    """The file once its ingestion has ended (ready or failed)."""

    async def check() -> dict[str, Any] | None:
        data = await file_of(client, user, file_id)
        return data if data["status"] in ("ready", "failed") else None

    result: dict[str, Any] = await wait_for(check, within=60)
    return result


async def search(
    client: httpx.AsyncClient, user: TestUser, q: str, **params: Any
) -> list[dict[str, Any]]:
    response = await client.get(
        "/api/knowledge/search", params={"q": q, **params}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["data"]["items"]
    return items
