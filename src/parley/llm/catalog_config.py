"""What the configuration says the catalog should hold: the configured providers, the models file
(`PARLEY_MODELS_FILE`, TOML or YAML), and `plan_catalog`, which combines them with what the
providers' servers listed at start-up into the entries to seed and the default model.

Where each model comes from, per configured provider (first that applies):
`<PROVIDER>_MODELS`, else the models file's entries for that provider, else the server's model
list. Each entry's details come from the models file, else from what the server said, else from
the reference prices bundled with `genai-prices`, else defaults (no price, tools supported).

Embedding models (`EMBEDDING_MODEL`, and the models file's entries with `kind = "embedding"`)
are a catalog of their own (`parley.llm.embedding_catalog`): they are never chat entries here.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from parley import engines
from parley.llm.schemas import OFFLINE_EMBEDDING_MODEL_ID, OFFLINE_MODEL_ID, OFFLINE_PROVIDER
from parley.settings import Settings

if TYPE_CHECKING:
    from genai_prices.types import TieredPrices

logger = logging.getLogger(__name__)

ProviderName = Literal["openai", "anthropic", "gemini"]
PROVIDER_ORDER: tuple[ProviderName, ...] = ("openai", "anthropic", "gemini")
DEFAULT_BASE_URLS: dict[ProviderName, str] = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
}
# genai-prices names Gemini's provider `google`.
_PRICE_PROVIDER_IDS: dict[ProviderName, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "google",
}
OFFLINE_NAME = "Parley offline"
OFFLINE_CONTEXT_WINDOW = 32_768
# The longest vectors an embedding entry may declare: above every embedding model's (4096 is
# the widest in common use).
MAX_EMBEDDING_DIMENSIONS = 16_384
# Anthropic offers no embedding API.
EMBEDDING_PROVIDERS = frozenset({"openai", "gemini", OFFLINE_PROVIDER})
# What a chat model's entry may say that an embedding model's may not.
_CHAT_ONLY_FIELDS = ("context_window", "supports_tools", "output_price_per_mtok")


class CatalogConfigError(ValueError):
    """The models file cannot be used (unreadable, malformed, or an entry is invalid)."""


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    """A provider the settings configure.

    Attributes:
        name: `openai` (any OpenAI-compatible server), `anthropic` or `gemini`.
        api_key: the key, if any (local OpenAI-compatible servers need none).
        base_url: where its API lives (the provider's own service unless the settings say).
        custom_base_url: whether `base_url` came from the settings.
        models: the `<PROVIDER>_MODELS` list; empty when unset.
    """

    name: ProviderName
    api_key: str | None
    base_url: str
    custom_base_url: bool
    models: tuple[str, ...]


def configured_providers(settings: Settings) -> list[ProviderConfig]:
    """The providers the settings configure, in the documented order (OpenAI, Anthropic, Gemini)."""
    raw: dict[ProviderName, tuple[Any, str | None, list[str]]] = {
        "openai": (settings.openai_api_key, settings.openai_base_url, settings.openai_models),
        "anthropic": (
            settings.anthropic_api_key,
            settings.anthropic_base_url,
            settings.anthropic_models,
        ),
        "gemini": (settings.gemini_api_key, settings.gemini_base_url, settings.gemini_models),
    }
    providers: list[ProviderConfig] = []
    for name in PROVIDER_ORDER:
        secret, base_url, models = raw[name]
        api_key = secret.get_secret_value() if secret is not None else None
        # A local OpenAI-compatible server (Ollama, vLLM, llama.cpp) is configured by its URL alone.
        if not api_key and not (name == "openai" and base_url):
            continue
        providers.append(
            ProviderConfig(
                name=name,
                api_key=api_key or None,
                base_url=(base_url or DEFAULT_BASE_URLS[name]).rstrip("/"),
                custom_base_url=bool(base_url),
                models=tuple(dict.fromkeys(models)),
            )
        )
    return providers


CatalogId = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, max_length=200, pattern=r"^(openai|anthropic|gemini|offline):\S+$"
    ),
]

EntryName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
FilePrice = Annotated[Decimal, Field(ge=0, max_digits=12, decimal_places=6)]


class ModelsFileEntry(BaseModel):
    """One `[[models]]` entry of the models file; only `id` is required.

    `kind` is `chat` (the default) or `embedding` (`offline:embed` is one without saying so);
    `dimensions` is an embedding model's vector length.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: CatalogId
    kind: Literal["chat", "embedding"] | None = None
    name: EntryName | None = None
    context_window: int | None = Field(default=None, gt=0)
    supports_tools: bool | None = None
    input_price_per_mtok: FilePrice | None = None
    output_price_per_mtok: FilePrice | None = None
    enabled: bool | None = None
    dimensions: int | None = Field(default=None, gt=0, le=MAX_EMBEDDING_DIMENSIONS)

    @model_validator(mode="after")
    def _check_kind(self) -> ModelsFileEntry:
        if not self.is_embedding:
            if self.id == OFFLINE_EMBEDDING_MODEL_ID:
                raise ValueError(f"{self.id} is the offline embedding model, not a chat model")
            if self.dimensions is not None:
                raise ValueError('`dimensions` is for embedding models (kind = "embedding")')
            return self
        if self.provider not in EMBEDDING_PROVIDERS:
            raise ValueError(f"{self.provider} offers no embedding models")
        if self.provider == OFFLINE_PROVIDER and self.id != OFFLINE_EMBEDDING_MODEL_ID:
            raise ValueError(f"the offline embedding model is {OFFLINE_EMBEDDING_MODEL_ID}")
        for name in _CHAT_ONLY_FIELDS:
            if getattr(self, name) is not None:
                raise ValueError(f"`{name}` is not for embedding models")
        return self

    @property
    def is_embedding(self) -> bool:
        """Whether the entry is an embedding model's rather than a chat model's."""
        if self.kind is None:
            return self.id == OFFLINE_EMBEDDING_MODEL_ID
        return self.kind == "embedding"

    @property
    def provider(self) -> str:
        """The part of the id before the first `:`."""
        return self.id.partition(":")[0]

    @property
    def model_name(self) -> str:
        """The part of the id after the first `:`."""
        return self.id.partition(":")[2]


class ModelsFile(BaseModel):
    """The whole models file: a list of entries under `models`."""

    model_config = ConfigDict(extra="forbid")

    models: list[ModelsFileEntry] = Field(default_factory=list)


def load_models_file(path: Path) -> list[ModelsFileEntry]:
    """Read and check a models file (`.toml`, `.yaml` or `.yml`).

    Raises:
        CatalogConfigError: the file cannot be read, parsed, or has an invalid entry.
    """
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise CatalogConfigError(f"PARLEY_MODELS_FILE must end in .toml, .yaml or .yml: {path}")
    try:
        text = path.read_text(encoding="utf-8")
        raw: Any = tomllib.loads(text) if suffix == ".toml" else yaml.safe_load(text)
        parsed = ModelsFile.model_validate(raw if raw is not None else {})
    except OSError as exc:
        raise CatalogConfigError(f"cannot read PARLEY_MODELS_FILE {path}: {exc}") from exc
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise CatalogConfigError(f"PARLEY_MODELS_FILE {path} is not valid: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        raise CatalogConfigError(
            f"PARLEY_MODELS_FILE {path}: {where}: {first.get('msg', 'invalid')}"
        ) from exc
    seen: set[str] = set()
    for entry in parsed.models:
        if entry.id in seen:
            raise CatalogConfigError(f"PARLEY_MODELS_FILE {path}: {entry.id} is listed twice")
        seen.add(entry.id)
    return parsed.models


@dataclass(frozen=True, slots=True)
class DiscoveredModel:
    """A model a provider's server listed, with what it said about it."""

    name: str
    display_name: str | None = None
    context_window: int | None = None


@dataclass(frozen=True, slots=True)
class ReferenceInfo:
    """Published prices and context window of a well-known model."""

    context_window: int | None
    input_price_per_mtok: Decimal | None
    output_price_per_mtok: Decimal | None


def _base_price(price: Decimal | TieredPrices | None) -> Decimal | None:
    if price is None or isinstance(price, Decimal):
        return price
    return price.base


def reference_info(provider: ProviderConfig, model_name: str) -> ReferenceInfo | None:
    """What `genai-prices` knows of this model on this provider (by its URL when it is custom, so
    OpenRouter and the like get their own prices), or None for a model it does not know.

    The price data (megabytes in memory, bench/findings.md) is loaded with the first lookup: a
    catalog whose configuration gives every price and context window never loads it (see
    `parley.engines`)."""
    snapshot = engines.module("genai_prices.data_snapshot").get_snapshot()
    try:
        if provider.custom_base_url:
            _, info = snapshot.find_provider_model(model_name, None, None, provider.base_url)
        else:
            _, info = snapshot.find_provider_model(
                model_name, None, _PRICE_PROVIDER_IDS[provider.name], None
            )
        prices = info.get_prices(datetime.now(UTC))
    except LookupError:
        return None
    return ReferenceInfo(
        context_window=info.context_window,
        input_price_per_mtok=_base_price(prices.input_mtok),
        output_price_per_mtok=_base_price(prices.output_mtok),
    )


@dataclass(frozen=True, slots=True)
class CatalogSpec:
    """One catalog entry as the configuration describes it."""

    model_id: str
    provider: str
    model_name: str
    name: str
    context_window: int | None
    supports_tools: bool
    input_price_per_mtok: Decimal
    output_price_per_mtok: Decimal
    enabled: bool
    position: int


@dataclass(frozen=True, slots=True)
class CatalogPlan:
    """Every entry the configuration offers, in order, and the default it names."""

    entries: tuple[CatalogSpec, ...]
    default_model_id: str


def _offline_spec(file_entry: ModelsFileEntry | None, position: int) -> CatalogSpec:
    return CatalogSpec(
        model_id=OFFLINE_MODEL_ID,
        provider=OFFLINE_PROVIDER,
        model_name=OFFLINE_MODEL_ID.partition(":")[2],
        name=(file_entry.name if file_entry and file_entry.name else OFFLINE_NAME),
        context_window=OFFLINE_CONTEXT_WINDOW,
        supports_tools=True,
        input_price_per_mtok=Decimal(0),
        output_price_per_mtok=Decimal(0),
        enabled=file_entry.enabled if file_entry and file_entry.enabled is not None else True,
        position=position,
    )


def _provider_spec(
    provider: ProviderConfig,
    model: DiscoveredModel,
    file_entry: ModelsFileEntry | None,
    position: int,
) -> CatalogSpec:
    entry = file_entry or ModelsFileEntry(id=f"{provider.name}:{model.name}")
    input_price = entry.input_price_per_mtok
    output_price = entry.output_price_per_mtok
    complete = (
        input_price is not None
        and output_price is not None
        and (entry.context_window or model.context_window)
    )
    reference = None if complete else reference_info(provider, model.name)
    ref_input = reference.input_price_per_mtok if reference else None
    ref_output = reference.output_price_per_mtok if reference else None
    ref_window = reference.context_window if reference else None
    return CatalogSpec(
        model_id=f"{provider.name}:{model.name}",
        provider=provider.name,
        model_name=model.name,
        name=(entry.name or model.display_name or model.name)[:100],
        context_window=entry.context_window or model.context_window or ref_window,
        supports_tools=entry.supports_tools if entry.supports_tools is not None else True,
        input_price_per_mtok=input_price if input_price is not None else ref_input or Decimal(0),
        output_price_per_mtok=(
            output_price if output_price is not None else ref_output or Decimal(0)
        ),
        enabled=entry.enabled if entry.enabled is not None else True,
        position=position,
    )


def _models_of(
    provider: ProviderConfig,
    file_entries: Sequence[ModelsFileEntry],
    discovered: Mapping[str, Sequence[DiscoveredModel]],
) -> list[DiscoveredModel]:
    """The provider's models, in order, from the first source that names any."""
    listed = {model.name: model for model in discovered.get(provider.name, ())}
    if provider.models:
        return [listed.get(name, DiscoveredModel(name)) for name in provider.models]
    from_file = [
        entry.model_name
        for entry in file_entries
        if entry.provider == provider.name and not entry.is_embedding
    ]
    if from_file:
        return [listed.get(name, DiscoveredModel(name)) for name in from_file]
    return list(listed.values())


def embedding_model_ids(settings: Settings, file_entries: Sequence[ModelsFileEntry]) -> set[str]:
    """The ids the configuration names as embedding models (`EMBEDDING_MODEL`, the models file's
    embedding entries, and `offline:embed`): none of them is ever a chat entry."""
    return {
        OFFLINE_EMBEDDING_MODEL_ID,
        settings.embedding_model,
        *(entry.id for entry in file_entries if entry.is_embedding),
    }


def _choose_default(settings: Settings, entries: Sequence[CatalogSpec]) -> str:
    enabled = [entry.model_id for entry in entries if entry.enabled]
    if settings.default_model:
        if settings.default_model in enabled:
            return settings.default_model
        logger.warning(
            "DEFAULT_MODEL %s is not an enabled catalog entry; choosing the default by the rules",
            settings.default_model,
        )
    for model_id in enabled:
        if model_id != OFFLINE_MODEL_ID:
            return model_id
    return OFFLINE_MODEL_ID


def plan_catalog(
    settings: Settings,
    *,
    file_entries: Sequence[ModelsFileEntry] = (),
    discovered: Mapping[str, Sequence[DiscoveredModel]] | None = None,
) -> CatalogPlan:
    """The catalog the configuration describes.

    Args:
        settings: the providers and their `*_MODELS`, and `DEFAULT_MODEL`.
        file_entries: the models file's entries.
        discovered: per provider, the models its server listed (for providers without
            `*_MODELS` and without entries in the models file).

    Returns:
        The entries (each configured provider's models in order, the offline model last) and the
        default: `DEFAULT_MODEL` when it names an enabled entry, else the first configured
        provider's first enabled model, else the offline model.
    """
    discovered = discovered or {}
    by_id = {entry.id: entry for entry in file_entries}
    embedding_ids = embedding_model_ids(settings, file_entries)
    providers = configured_providers(settings)
    configured = {provider.name for provider in providers} | {OFFLINE_PROVIDER}
    for entry in file_entries:
        if entry.provider not in configured:
            logger.warning("models file: %s skipped, its provider is not configured", entry.id)
    specs: list[CatalogSpec] = []
    for provider in providers:
        for model in _models_of(provider, file_entries, discovered):
            model_id = f"{provider.name}:{model.name}"
            if model_id in embedding_ids or any(spec.model_id == model_id for spec in specs):
                continue
            specs.append(_provider_spec(provider, model, by_id.get(model_id), len(specs)))
    offline = _offline_spec(by_id.get(OFFLINE_MODEL_ID), len(specs))
    if not any(spec.enabled for spec in specs) and not offline.enabled:
        logger.warning("every catalog entry is disabled; keeping the offline model enabled")
        offline = _offline_spec(None, len(specs))
    specs.append(offline)
    return CatalogPlan(entries=tuple(specs), default_model_id=_choose_default(settings, specs))
