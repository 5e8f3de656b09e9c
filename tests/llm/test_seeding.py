"""The catalog at start-up: discovery from the providers' servers, the models file, `DEFAULT_MODEL`,
and re-seeding that keeps what admins changed. Each start-up is a second app's lifespan on the
session database."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley.llm.catalog_config import CatalogConfigError
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.gemini_upstream import FakeGemini
from tests.fakes.loopback import free_port
from tests.fakes.openai_upstream import FakeOpenAI
from tests.fixtures.accounts import TestUser
from tests.fixtures.apps import running_app
from tests.fixtures.catalogs import Seeder
from tests.fixtures.settings import SettingsFactory

OFFLINE = "offline:parley"


async def _catalog(client: httpx.AsyncClient, who: TestUser) -> list[dict[str, Any]]:
    response = await client.get(
        "/api/models", params={"include_disabled": "true", "limit": 100}, headers=who.headers
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["data"]["items"]
    return items


def _ids(items: list[dict[str, Any]]) -> list[str]:
    return [item["id"] for item in items]


def _default(items: list[dict[str, Any]]) -> str:
    [default] = [item["id"] for item in items if item["is_default"]]
    return default


async def test_openai_models_are_read_from_the_server_when_not_listed(
    fake_openai: FakeOpenAI, llm_settings: SettingsFactory, admin: TestUser
) -> None:
    settings = llm_settings(openai_api_key="sk-fake", openai_base_url=fake_openai.base_url)
    async with running_app(settings) as (_, client):
        items = await _catalog(client, admin)
    # The embedding model is not offered for chat.
    assert _ids(items) == ["openai:gpt-fake-large", "openai:gpt-fake-small", OFFLINE]
    assert _default(items) == "openai:gpt-fake-large"
    [request] = fake_openai.script.requests
    assert (request.method, request.path) == ("GET", "/v1/models")
    assert request.headers["authorization"] == "Bearer sk-fake"


async def test_openai_models_setting_means_no_discovery(
    fake_openai: FakeOpenAI, llm_settings: SettingsFactory, admin: TestUser
) -> None:
    settings = llm_settings(
        openai_base_url=fake_openai.base_url, openai_models=["local-b", "local-a"]
    )
    async with running_app(settings) as (_, client):
        items = await _catalog(client, admin)
    assert _ids(items) == ["openai:local-b", "openai:local-a", OFFLINE]
    assert fake_openai.script.requests == []


async def test_anthropic_models_are_read_from_the_server(
    fake_anthropic: FakeAnthropic, llm_settings: SettingsFactory, admin: TestUser
) -> None:
    settings = llm_settings(
        anthropic_api_key="sk-ant-fake", anthropic_base_url=fake_anthropic.base_url
    )
    async with running_app(settings) as (_, client):
        items = await _catalog(client, admin)
    assert [(item["id"], item["name"]) for item in items] == [
        ("anthropic:claude-fake-opus", "Claude Fake Opus"),
        ("anthropic:claude-fake-haiku", "Claude Fake Haiku"),
        (OFFLINE, "Parley offline"),
    ]
    [request] = fake_anthropic.script.requests
    assert request.headers["x-api-key"] == "sk-ant-fake"
    assert "anthropic-version" in request.headers


async def test_gemini_models_are_read_from_the_server(
    llm_settings: SettingsFactory, admin: TestUser
) -> None:
    server = FakeGemini.start()
    try:
        settings = llm_settings(gemini_api_key="gm-fake", gemini_base_url=server.origin)
        async with running_app(settings) as (_, client):
            items = await _catalog(client, admin)
    finally:
        server.stop()
    assert [(item["id"], item["name"], item["context_window"]) for item in items[:-1]] == [
        ("gemini:gemini-fake-pro", "Gemini Fake Pro", 1048576)
    ]
    assert _default(items) == "gemini:gemini-fake-pro"
    [request] = server.script.requests
    assert request.headers["x-goog-api-key"] == "gm-fake"


@pytest.mark.parametrize("broken", ["unreachable", "http_500"])
async def test_a_failing_discovery_only_warns(
    fake_openai: FakeOpenAI,
    llm_settings: SettingsFactory,
    admin: TestUser,
    caplog: pytest.LogCaptureFixture,
    broken: str,
) -> None:
    if broken == "unreachable":
        base_url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    else:
        fake_openai.models_status = 500
        base_url = fake_openai.base_url
    settings = llm_settings(openai_api_key="sk-fake", openai_base_url=base_url)
    with caplog.at_level(logging.WARNING, logger="parley.llm.discovery"):
        async with running_app(settings) as (_, client):
            items = await _catalog(client, admin)
    assert _ids(items) == [OFFLINE]
    assert _default(items) == OFFLINE
    assert any("could not list the models of openai" in r.getMessage() for r in caplog.records)


def _write_models_file(path: Path, a_price: str, b_name: str, extra: str = "") -> Path:
    path.write_text(
        f"""
[[models]]
id = "openai:gpt-a"
name = "GPT A"
input_price_per_mtok = {a_price}
output_price_per_mtok = 2.5
context_window = 128000

[[models]]
id = "openai:gpt-b"
name = "{b_name}"
input_price_per_mtok = 1
output_price_per_mtok = 4
supports_tools = false
{extra}
""",
        encoding="utf-8",
    )
    return path


async def test_restarts_keep_admin_edits_and_are_idempotent(
    llm_settings: SettingsFactory, admin: TestUser, tmp_path: Path
) -> None:
    models_file = _write_models_file(tmp_path / "models.toml", "0.5", "GPT B")
    settings = llm_settings(openai_api_key="sk-fake", models_file=models_file)
    async with running_app(settings) as (_, client):
        first = await _catalog(client, admin)
        assert _ids(first) == ["openai:gpt-a", "openai:gpt-b", OFFLINE]
        assert first[0]["input_price_per_mtok"] == 0.5
        assert first[0]["context_window"] == 128000
        assert first[1]["supports_tools"] is False
        assert _default(first) == "openai:gpt-a"
        for model_id, body in (
            ("openai:gpt-b", {"name": "Bee", "input_price_per_mtok": 9, "is_default": True}),
            ("openai:gpt-a", {"enabled": False}),
        ):
            response = await client.patch(
                f"/api/admin/models/{model_id}", json=body, headers=admin.headers
            )
            assert response.status_code == 200, response.text

    _write_models_file(
        models_file, "3", "GPT B2", extra='\n[[models]]\nid = "openai:gpt-c"\nname = "GPT C"\n'
    )
    async with running_app(settings) as (_, client):
        second = await _catalog(client, admin)
    async with running_app(settings) as (_, client):
        third = await _catalog(client, admin)

    assert _ids(second) == ["openai:gpt-a", "openai:gpt-b", "openai:gpt-c", OFFLINE]
    a, b, c, _ = second
    assert (a["enabled"], a["input_price_per_mtok"]) == (False, 3.0)  # disabled by the admin
    assert (b["name"], b["input_price_per_mtok"], b["output_price_per_mtok"]) == ("Bee", 9.0, 4.0)
    assert c["name"] == "GPT C"
    assert _default(second) == "openai:gpt-b"  # the admin's choice
    assert third == second


async def test_models_that_leave_are_hidden_and_come_back_with_their_edits(
    client: httpx.AsyncClient, admin: TestUser, seed: Seeder
) -> None:
    two = {"openai_api_key": "sk-fake", "openai_models": ["gpt-a", "gpt-b"]}
    await seed(**two)
    response = await client.patch(
        "/api/admin/models/openai:gpt-b",
        json={"name": "Bee", "is_default": True},
        headers=admin.headers,
    )
    assert response.status_code == 200
    await seed(openai_api_key="sk-fake", openai_models=["gpt-a"])
    items = await _catalog(client, admin)
    assert _ids(items) == ["openai:gpt-a", OFFLINE]
    assert _default(items) == "openai:gpt-a"  # the admin's default left with its model
    await seed(**two)
    items = await _catalog(client, admin)
    assert [(item["id"], item["name"]) for item in items] == [
        ("openai:gpt-a", "gpt-a"),
        ("openai:gpt-b", "Bee"),
        (OFFLINE, "Parley offline"),
    ]
    assert _default(items) == "openai:gpt-a"


async def test_default_model_setting_chooses_the_default(
    client: httpx.AsyncClient, user: TestUser, seed: Seeder, caplog: pytest.LogCaptureFixture
) -> None:
    two = {"openai_api_key": "sk-fake", "openai_models": ["gpt-a", "gpt-b"]}
    await seed(**two, default_model="openai:gpt-b")
    assert _default(await _catalog_of(client, user)) == "openai:gpt-b"
    await seed(**two, default_model=OFFLINE)
    assert _default(await _catalog_of(client, user)) == OFFLINE
    with caplog.at_level(logging.WARNING, logger="parley.llm.catalog_config"):
        await seed(**two, default_model="openai:gpt-zzz")
    assert _default(await _catalog_of(client, user)) == "openai:gpt-a"
    assert any("DEFAULT_MODEL openai:gpt-zzz" in r.getMessage() for r in caplog.records)


async def _catalog_of(client: httpx.AsyncClient, who: TestUser) -> list[dict[str, Any]]:
    response = await client.get("/api/models", headers=who.headers)
    items: list[dict[str, Any]] = response.json()["data"]["items"]
    return items


async def test_a_broken_models_file_stops_start_up(
    llm_settings: SettingsFactory, tmp_path: Path
) -> None:
    models_file = tmp_path / "models.yaml"
    models_file.write_text("models:\n  - id: openai:gpt-a\n    price: 3\n", encoding="utf-8")
    settings = llm_settings(openai_api_key="sk-fake", models_file=models_file)
    with pytest.raises(CatalogConfigError, match=r"models\.0\.price"):
        async with running_app(settings):
            pass


async def test_the_offline_model_returns_when_nothing_else_is_left(
    client: httpx.AsyncClient, admin: TestUser, seed: Seeder, caplog: pytest.LogCaptureFixture
) -> None:
    await seed(openai_api_key="sk-fake", openai_models=["gpt-a", "gpt-b"])
    for model_id, body in (
        ("openai:gpt-b", {"is_default": True}),
        ("openai:gpt-a", {"enabled": False}),
        (OFFLINE, {"enabled": False}),
    ):
        response = await client.patch(
            f"/api/admin/models/{model_id}", json=body, headers=admin.headers
        )
        assert response.status_code == 200, response.text
    with caplog.at_level(logging.WARNING, logger="parley.llm.seeding"):
        await seed(openai_api_key="sk-fake", openai_models=["gpt-a"])  # the default's model left
    items = await _catalog(client, admin)
    assert [(item["id"], item["enabled"], item["is_default"]) for item in items] == [
        ("openai:gpt-a", False, False),
        (OFFLINE, True, True),
    ]
    assert "re-enabling the offline model" in caplog.text
