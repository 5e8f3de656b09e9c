"""What the configuration says the catalog holds: providers, the models file, reference prices,
the default. Pure functions, no database."""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path

import pytest

from parley.llm.catalog_config import (
    CatalogConfigError,
    DiscoveredModel,
    ModelsFileEntry,
    configured_providers,
    load_models_file,
    plan_catalog,
)
from parley.settings import Settings
from tests.fixtures.settings import SettingsFactory

OFFLINE = "offline:parley"


def test_without_providers_there_is_only_the_offline_model(llm_settings: SettingsFactory) -> None:
    plan = plan_catalog(llm_settings())
    assert [spec.model_id for spec in plan.entries] == [OFFLINE]
    assert plan.default_model_id == OFFLINE
    [offline] = plan.entries
    assert (offline.input_price_per_mtok, offline.output_price_per_mtok) == (0, 0)
    assert offline.supports_tools


def test_which_providers_count_as_configured(llm_settings: SettingsFactory) -> None:
    settings = llm_settings(
        openai_base_url="http://localhost:11434/v1/",  # Ollama: no key needed
        anthropic_base_url="http://localhost:9",  # a URL without a key is not enough
        gemini_api_key="gm-key",
    )
    providers = configured_providers(settings)
    assert [(p.name, p.base_url, p.api_key, p.custom_base_url) for p in providers] == [
        ("openai", "http://localhost:11434/v1", None, True),
        ("gemini", "https://generativelanguage.googleapis.com", "gm-key", False),
    ]


def test_models_lists_are_read_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    monkeypatch.setenv("OPENAI_MODELS", " gpt-a, gpt-b ,,")
    monkeypatch.setenv("PARLEY_MODELS_FILE", str(tmp_path / "models.toml"))
    monkeypatch.setenv("OFFLINE_MODEL_DELAY_MS", "5")
    monkeypatch.setenv("DEFAULT_MODEL", "openai:gpt-b")
    settings = Settings(_env_file=None)
    assert settings.openai_models == ["gpt-a", "gpt-b"]
    assert settings.openai_api_key is not None
    assert settings.openai_api_key.get_secret_value() == "sk-env"
    assert "sk-env" not in repr(settings)
    assert settings.models_file == tmp_path / "models.toml"
    assert (settings.offline_model_delay_ms, settings.default_model) == (5, "openai:gpt-b")


def test_where_each_providers_models_come_from(llm_settings: SettingsFactory) -> None:
    file_entries = [
        ModelsFileEntry(id="openai:from-file"),
        ModelsFileEntry(id="anthropic:claude-file", name="Claude from the file"),
    ]
    discovered = {
        "openai": [DiscoveredModel("listed")],
        "anthropic": [DiscoveredModel("claude-listed")],
        "gemini": [DiscoveredModel("gemini-listed", "Gemini Listed", 4096)],
    }
    settings = llm_settings(
        openai_api_key="k",
        openai_models=["from-setting"],
        anthropic_api_key="k",
        gemini_api_key="k",
    )
    plan = plan_catalog(settings, file_entries=file_entries, discovered=discovered)
    assert [(spec.model_id, spec.name, spec.position) for spec in plan.entries] == [
        ("openai:from-setting", "from-setting", 0),  # *_MODELS first,
        ("anthropic:claude-file", "Claude from the file", 1),  # then the file,
        ("gemini:gemini-listed", "Gemini Listed", 2),  # then the server's list
        (OFFLINE, "Parley offline", 3),
    ]
    assert plan.entries[2].context_window == 4096
    assert plan.default_model_id == "openai:from-setting"


def test_file_entries_of_unconfigured_providers_are_skipped(
    llm_settings: SettingsFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="parley.llm.catalog_config"):
        plan = plan_catalog(llm_settings(), file_entries=[ModelsFileEntry(id="gemini:gemini-x")])
    assert [spec.model_id for spec in plan.entries] == [OFFLINE]
    assert "gemini:gemini-x skipped" in caplog.text


def test_known_models_get_reference_prices_unless_the_file_says(
    llm_settings: SettingsFactory,
) -> None:
    settings = llm_settings(openai_api_key="k", openai_models=["gpt-4o-mini", "my-finetune"])
    plan = plan_catalog(settings)
    known, unknown, _ = plan.entries
    assert known.input_price_per_mtok > 0
    assert known.output_price_per_mtok > known.input_price_per_mtok
    assert known.context_window == 128000
    assert (unknown.input_price_per_mtok, unknown.context_window) == (Decimal(0), None)

    priced = ModelsFileEntry(
        id="openai:gpt-4o-mini", input_price_per_mtok=Decimal("7"), output_price_per_mtok=0
    )
    known, *_ = plan_catalog(settings, file_entries=[priced]).entries
    assert (known.input_price_per_mtok, known.output_price_per_mtok) == (7, 0)


def test_the_file_may_rename_or_disable_the_offline_model(llm_settings: SettingsFactory) -> None:
    entries = [ModelsFileEntry(id=OFFLINE, name="Helper", enabled=False)]
    settings = llm_settings(openai_api_key="k", openai_models=["gpt-a"])
    *_, offline = plan_catalog(settings, file_entries=entries).entries
    assert (offline.name, offline.enabled) == ("Helper", False)
    # ...but not leave nothing to chat with.
    [offline] = plan_catalog(llm_settings(), file_entries=entries).entries
    assert offline.enabled


def test_a_disabled_first_model_is_not_the_default(llm_settings: SettingsFactory) -> None:
    settings = llm_settings(openai_api_key="k", openai_models=["gpt-a", "gpt-b"])
    entries = [ModelsFileEntry(id="openai:gpt-a", enabled=False)]
    assert plan_catalog(settings, file_entries=entries).default_model_id == "openai:gpt-b"


def test_toml_and_yaml_files(tmp_path: Path) -> None:
    toml = tmp_path / "models.toml"
    toml.write_text(
        '[[models]]\nid = "openai:gpt-a"\nname = "A"\ninput_price_per_mtok = 0.15\n'
        "output_price_per_mtok = 0.6\ncontext_window = 128000\nsupports_tools = true\n",
        encoding="utf-8",
    )
    yaml = tmp_path / "models.yml"
    yaml.write_text(
        "models:\n  - id: openai:gpt-a\n    name: A\n    input_price_per_mtok: 0.15\n"
        "    output_price_per_mtok: 0.6\n    context_window: 128000\n    supports_tools: true\n",
        encoding="utf-8",
    )
    assert load_models_file(toml) == load_models_file(yaml)
    [entry] = load_models_file(toml)
    assert entry.input_price_per_mtok == Decimal("0.15")
    assert (entry.provider, entry.model_name) == ("openai", "gpt-a")
    empty = tmp_path / "empty.yaml"
    empty.write_text("", encoding="utf-8")
    assert load_models_file(empty) == []


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("models.json", "{}", "must end in .toml"),
        ("models.toml", "[[models]\n", "is not valid"),
        ("models.yaml", "models: [\n", "is not valid"),
        ("models.toml", '[[models]]\nid = "mistral:large"\n', "models.0.id"),
        ("models.toml", '[[models]]\nid = "openai:a"\ncolour = "red"\n', "models.0.colour"),
        ("models.toml", '[[models]]\nid = "openai:a"\ninput_price_per_mtok = -1\n', "models.0"),
        ("models.toml", '[[models]]\nid = "openai:a"\n[[models]]\nid = "openai:a"\n', "twice"),
        ("models.toml", 'models = "all of them"\n', "models"),
    ],
)
def test_bad_models_files(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CatalogConfigError, match=message):
        load_models_file(path)


def test_a_missing_models_file(tmp_path: Path) -> None:
    with pytest.raises(CatalogConfigError, match="cannot read"):
        load_models_file(tmp_path / "nowhere.toml")
