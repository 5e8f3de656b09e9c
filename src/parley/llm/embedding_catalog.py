"""The embedding catalog: which embedding models this process offers, planned once at start-up from
the configuration. Embedding models are catalog entries of their own kind, kept apart from the chat
catalog (the `model_catalog` table), so no chat ever picks one and no embedding call a chat model.

Its entries: `offline:embed` (always there, needs no provider), each models-file entry with
`kind = "embedding"` whose provider is configured and that is not disabled, and `EMBEDDING_MODEL`
(the default) when it names a provider's model. A model's vector length comes from its entry's
`dimensions`, else from what is known of the well-known models on their makers' own services, else
it is learnt from the model's first answer; its price from the entry, else from `genai-prices`'
reference prices, else 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from parley.llm.catalog_config import (
    CatalogConfigError,
    ModelsFileEntry,
    ProviderConfig,
    configured_providers,
    load_models_file,
    reference_info,
)
from parley.llm.schemas import OFFLINE_EMBEDDING_MODEL_ID, OFFLINE_PROVIDER
from parley.settings import Settings
from parley.usage.pricing import cost_usd

OFFLINE_EMBEDDING_NAME = "Parley offline embeddings (multilingual-e5-small)"
OFFLINE_EMBEDDING_DIMENSION = 384
# Vector lengths of well-known models, trusted on their makers' own services only: a server
# behind a custom base URL may serve another model under the same name.
KNOWN_DIMENSIONS: dict[tuple[str, str], int] = {
    ("openai", "text-embedding-3-small"): 1536,
    ("openai", "text-embedding-3-large"): 3072,
    ("openai", "text-embedding-ada-002"): 1536,
    ("gemini", "gemini-embedding-001"): 3072,
    ("gemini", "text-embedding-004"): 768,
}


@dataclass(frozen=True, slots=True)
class EmbeddingEntry:
    """One embedding model of the catalog.

    Attributes:
        id: the catalog id, `<provider>:<model>`.
        model_name: the provider's own name for the model.
        dimension: the length of its vectors, or None until its first answer tells.
        truncates: whether longer vectors than `dimension` are cut to it (the models file set
            `dimensions`: the operator asks for shortened vectors) rather than refused.
        is_default: whether `EMBEDDING_MODEL` names it.
    """

    id: str
    provider: str
    model_name: str
    name: str
    dimension: int | None
    truncates: bool
    input_price_per_mtok: Decimal
    is_default: bool
    # Embeddings produce no output tokens; the field makes the entry a `Prices` for estimates.
    output_price_per_mtok: Decimal = Decimal(0)

    def cost_usd(self, input_tokens: int, output_tokens: int = 0) -> Decimal:
        """What embedding this many tokens costs at the entry's price."""
        return cost_usd(
            input_tokens,
            output_tokens,
            input_price_per_mtok=self.input_price_per_mtok,
            output_price_per_mtok=self.output_price_per_mtok,
        )


def _offline_entry(file_entry: ModelsFileEntry | None, *, is_default: bool) -> EmbeddingEntry:
    return EmbeddingEntry(
        id=OFFLINE_EMBEDDING_MODEL_ID,
        provider=OFFLINE_PROVIDER,
        model_name=OFFLINE_EMBEDDING_MODEL_ID.partition(":")[2],
        name=file_entry.name if file_entry and file_entry.name else OFFLINE_EMBEDDING_NAME,
        dimension=OFFLINE_EMBEDDING_DIMENSION,
        truncates=False,
        input_price_per_mtok=Decimal(0),
        is_default=is_default,
    )


def _provider_entry(
    config: ProviderConfig, model_name: str, file_entry: ModelsFileEntry | None, *, is_default: bool
) -> EmbeddingEntry:
    price = file_entry.input_price_per_mtok if file_entry else None
    if price is None:
        reference = reference_info(config, model_name)
        price = reference.input_price_per_mtok if reference else None
    dimension = file_entry.dimensions if file_entry else None
    if dimension is None and not config.custom_base_url:
        dimension = KNOWN_DIMENSIONS.get((config.name, model_name))
    return EmbeddingEntry(
        id=f"{config.name}:{model_name}",
        provider=config.name,
        model_name=model_name,
        name=(file_entry.name if file_entry and file_entry.name else model_name)[:100],
        dimension=dimension,
        truncates=bool(file_entry and file_entry.dimensions),
        input_price_per_mtok=price or Decimal(0),
        is_default=is_default,
    )


def plan_embedding_catalog(
    settings: Settings, file_entries: Sequence[ModelsFileEntry] = ()
) -> tuple[EmbeddingEntry, ...]:
    """The embedding models the configuration offers (see the module's docstring), the offline
    embedder last.

    A models-file embedding entry whose provider is not configured is left out (the chat
    catalog's planning warns about it).

    Raises:
        CatalogConfigError: `EMBEDDING_MODEL` names a model of a provider that is not configured,
            one the models file disables or lists as a chat model, or one `<PROVIDER>_MODELS`
            lists as a chat model; or a models-file embedding entry is listed there as well.
    """
    default_id = settings.embedding_model
    providers: dict[str, ProviderConfig] = {
        config.name: config for config in configured_providers(settings)
    }
    by_id = {entry.id: entry for entry in file_entries}
    wanted = [entry.id for entry in file_entries if entry.is_embedding]
    if default_id not in wanted:
        wanted.append(default_id)
    chosen = by_id.get(default_id)
    if chosen is not None and not chosen.is_embedding:
        raise CatalogConfigError(
            f"EMBEDDING_MODEL {default_id} is a chat model in PARLEY_MODELS_FILE; give its entry "
            'kind = "embedding" or choose an embedding model'
        )
    entries: list[EmbeddingEntry] = []
    for model_id in wanted:
        if model_id == OFFLINE_EMBEDDING_MODEL_ID:
            continue
        provider, _, model_name = model_id.partition(":")
        is_default = model_id == default_id
        file_entry = by_id.get(model_id)
        config = providers.get(provider)
        if config is None:
            if is_default:
                raise CatalogConfigError(
                    f"EMBEDDING_MODEL {model_id}: the {provider} provider is not configured"
                )
            continue
        if model_name in config.models:
            raise CatalogConfigError(
                f"{model_id} is an embedding model, yet {provider.upper()}_MODELS lists it as a "
                "chat model"
            )
        if file_entry is not None and file_entry.enabled is False:
            if is_default:
                raise CatalogConfigError(
                    f"EMBEDDING_MODEL {model_id} is disabled in PARLEY_MODELS_FILE"
                )
            continue
        entries.append(_provider_entry(config, model_name, file_entry, is_default=is_default))
    entries.append(
        _offline_entry(
            by_id.get(OFFLINE_EMBEDDING_MODEL_ID),
            is_default=default_id == OFFLINE_EMBEDDING_MODEL_ID,
        )
    )
    return tuple(entries)


def load_embedding_catalog(settings: Settings) -> tuple[EmbeddingEntry, ...]:
    """The embedding catalog the configuration describes, the models file read for it.

    Raises:
        CatalogConfigError: the models file cannot be used, or `plan_embedding_catalog` refuses
            the configuration.
    """
    file_entries = load_models_file(settings.models_file) if settings.models_file else []
    return plan_embedding_catalog(settings, file_entries)
