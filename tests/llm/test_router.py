"""`GET /api/models` and `PATCH /api/admin/models/{id}` over HTTP."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.fixtures.accounts import TestUser
from tests.fixtures.catalogs import Seeder

OFFLINE = "offline:parley"
TWO_OPENAI = {"openai_api_key": "sk-test", "openai_models": ["gpt-a", "gpt-b"]}


async def _models(client: httpx.AsyncClient, who: TestUser, **params: Any) -> list[dict[str, Any]]:
    response = await client.get("/api/models", params=params, headers=who.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["data"]["items"]
    return items


async def _patch(
    client: httpx.AsyncClient, who: TestUser, model_id: str, body: dict[str, Any]
) -> httpx.Response:
    return await client.patch(f"/api/admin/models/{model_id}", json=body, headers=who.headers)


async def test_a_fresh_catalog_offers_the_offline_model_as_default(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    response = await client.get("/api/models", headers=user.headers)
    assert response.status_code == 200
    body = response.json()
    assert len(body["trace_id"]) == 32
    assert body["data"]["next_cursor"] is None
    assert body["data"]["items"] == [
        {
            "id": OFFLINE,
            "name": "Parley offline",
            "provider": "offline",
            "context_window": 32768,
            "supports_tools": True,
            "input_price_per_mtok": 0.0,
            "output_price_per_mtok": 0.0,
            "is_default": True,
            "enabled": True,
        }
    ]


async def test_listing_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/models")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "not_authenticated"


async def test_configured_models_come_first_and_the_first_is_default(
    client: httpx.AsyncClient, user: TestUser, seed: Seeder
) -> None:
    await seed(**TWO_OPENAI)
    items = await _models(client, user)
    assert [item["id"] for item in items] == ["openai:gpt-a", "openai:gpt-b", OFFLINE]
    assert [item["is_default"] for item in items] == [True, False, False]


async def test_pages_follow_the_catalog_order(
    client: httpx.AsyncClient, user: TestUser, seed: Seeder
) -> None:
    await seed(**TWO_OPENAI)
    response = await client.get("/api/models", params={"limit": 2}, headers=user.headers)
    page = response.json()["data"]
    assert [item["id"] for item in page["items"]] == ["openai:gpt-a", "openai:gpt-b"]
    assert page["next_cursor"]
    response = await client.get(
        "/api/models", params={"limit": 2, "cursor": page["next_cursor"]}, headers=user.headers
    )
    page = response.json()["data"]
    assert [item["id"] for item in page["items"]] == [OFFLINE]
    assert page["next_cursor"] is None


async def test_include_disabled_is_for_admins_only(
    client: httpx.AsyncClient, user: TestUser, admin: TestUser, seed: Seeder
) -> None:
    await seed(**TWO_OPENAI)
    assert (await _patch(client, admin, "openai:gpt-b", {"enabled": False})).status_code == 200

    refused = await client.get(
        "/api/models", params={"include_disabled": "true"}, headers=user.headers
    )
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "forbidden"

    assert [item["id"] for item in await _models(client, user)] == ["openai:gpt-a", OFFLINE]
    everything = await _models(client, admin, include_disabled="true")
    assert [(item["id"], item["enabled"]) for item in everything] == [
        ("openai:gpt-a", True),
        ("openai:gpt-b", False),
        (OFFLINE, True),
    ]


async def test_an_admin_renames_and_prices_a_model(
    client: httpx.AsyncClient, user: TestUser, admin: TestUser
) -> None:
    response = await _patch(
        client,
        admin,
        OFFLINE,
        {"name": "  Offline helper ", "input_price_per_mtok": 0.15, "output_price_per_mtok": 2},
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["name"] == "Offline helper"
    assert data["input_price_per_mtok"] == 0.15
    assert data["output_price_per_mtok"] == 2.0
    assert isinstance(data["output_price_per_mtok"], float)
    [listed] = await _models(client, user)
    assert listed == data


@pytest.mark.parametrize("path", ["offline%3Aparley", "offline:parley"])
async def test_the_id_may_be_url_encoded(
    client: httpx.AsyncClient, admin: TestUser, path: str
) -> None:
    response = await _patch(client, admin, path, {"name": "Renamed"})
    assert response.status_code == 200, response.text
    assert response.json()["data"]["id"] == OFFLINE


async def test_ids_with_a_slash_work(
    client: httpx.AsyncClient, admin: TestUser, seed: Seeder
) -> None:
    await seed(openai_base_url="http://127.0.0.1:9/v1", openai_models=["meta-llama/llama-3-8b"])
    for path in ("openai:meta-llama/llama-3-8b", "openai%3Ameta-llama%2Fllama-3-8b"):
        response = await _patch(client, admin, path, {"name": "Llama"})
        assert response.status_code == 200, response.text
        assert response.json()["data"]["id"] == "openai:meta-llama/llama-3-8b"


async def test_only_admins_may_patch(client: httpx.AsyncClient, user: TestUser) -> None:
    response = await _patch(client, user, OFFLINE, {"name": "Mine now"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "forbidden"
    anonymous = await client.patch(f"/api/admin/models/{OFFLINE}", json={"name": "x"})
    assert anonymous.status_code == 401


async def test_unknown_ids_are_not_found(client: httpx.AsyncClient, admin: TestUser) -> None:
    for model_id in ("openai:nope", "nope", "offline:other"):
        response = await _patch(client, admin, model_id, {"enabled": False})
        assert response.status_code == 404, model_id
        assert response.json()["error"]["code"] == "not_found"


async def test_models_whose_provider_is_gone_are_not_found(
    client: httpx.AsyncClient, admin: TestUser, seed: Seeder
) -> None:
    await seed(**TWO_OPENAI)
    await seed()  # the provider is no longer configured
    assert (await _patch(client, admin, "openai:gpt-a", {"name": "x"})).status_code == 404
    assert [item["id"] for item in await _models(client, admin, include_disabled="true")] == [
        OFFLINE
    ]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"input_price_per_mtok": -1}, "body.input_price_per_mtok"),
        ({"output_price_per_mtok": 0.1234567}, "body.output_price_per_mtok"),
        ({"input_price_per_mtok": "cheap"}, "body.input_price_per_mtok"),
        ({"enabled": None}, "body.enabled"),
        ({"is_default": None}, "body.is_default"),
        ({"name": ""}, "body.name"),
        ({"name": "x" * 101}, "body.name"),
        ({"context_window": 5}, "body.context_window"),
    ],
)
async def test_bad_bodies_are_422(
    client: httpx.AsyncClient, admin: TestUser, body: dict[str, Any], field: str
) -> None:
    response = await _patch(client, admin, OFFLINE, body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert field in [detail["field"] for detail in error["details"]]


async def test_an_empty_body_changes_nothing(client: httpx.AsyncClient, admin: TestUser) -> None:
    response = await _patch(client, admin, OFFLINE, {})
    assert response.status_code == 200
    assert response.json()["data"]["name"] == "Parley offline"


async def test_setting_is_default_moves_the_default(
    client: httpx.AsyncClient, user: TestUser, admin: TestUser, seed: Seeder
) -> None:
    await seed(**TWO_OPENAI)
    response = await _patch(client, admin, "openai:gpt-b", {"is_default": True})
    assert response.status_code == 200
    assert response.json()["data"]["is_default"] is True
    defaults = [item["id"] for item in await _models(client, user) if item["is_default"]]
    assert defaults == ["openai:gpt-b"]

    # Again, on the same entry: still exactly one default.
    assert (await _patch(client, admin, "openai:gpt-b", {"is_default": True})).status_code == 200
    defaults = [item["id"] for item in await _models(client, user) if item["is_default"]]
    assert defaults == ["openai:gpt-b"]


async def test_disabling_the_default_is_a_conflict(
    client: httpx.AsyncClient, user: TestUser, admin: TestUser, seed: Seeder
) -> None:
    await seed(**TWO_OPENAI)
    for body in ({"enabled": False}, {"is_default": False}):
        response = await _patch(client, admin, "openai:gpt-a", body)
        assert response.status_code == 409, body
        assert response.json()["error"]["code"] == "conflict"
    refused = await _patch(client, admin, "openai:gpt-b", {"is_default": True, "enabled": False})
    assert refused.status_code == 409
    items = await _models(client, user)
    assert [(item["id"], item["is_default"]) for item in items][:2] == [
        ("openai:gpt-a", True),
        ("openai:gpt-b", False),
    ]


async def test_a_disabled_model_becomes_default_when_enabled_in_the_same_change(
    client: httpx.AsyncClient, admin: TestUser, seed: Seeder
) -> None:
    await seed(**TWO_OPENAI)
    assert (await _patch(client, admin, "openai:gpt-b", {"enabled": False})).status_code == 200
    response = await _patch(client, admin, "openai:gpt-b", {"enabled": True, "is_default": True})
    assert response.status_code == 200
    assert response.json()["data"]["is_default"] is True
    # The old default may now be disabled, and is_default: false is harmless on it.
    old = await _patch(client, admin, "openai:gpt-a", {"enabled": False, "is_default": False})
    assert old.status_code == 200
    assert old.json()["data"] | {"enabled": False, "is_default": False} == old.json()["data"]


async def test_concurrent_default_moves_leave_exactly_one_default(
    client: httpx.AsyncClient, user: TestUser, admin: TestUser, seed: Seeder
) -> None:
    await seed(openai_api_key="sk-test", openai_models=["gpt-a", "gpt-b", "gpt-c", "gpt-d"])
    for _ in range(3):
        responses = await asyncio.gather(
            *(
                _patch(client, admin, f"openai:gpt-{letter}", {"is_default": True})
                for letter in "bcd"
            )
        )
        statuses = [response.status_code for response in responses]
        assert set(statuses) <= {200, 409}, [response.text for response in responses]
        assert 200 in statuses
        defaults = [item["id"] for item in await _models(client, user) if item["is_default"]]
        assert len(defaults) == 1
