"""Request and response models of the model catalog (CONTRACT.md section 5), and `CatalogEntry`,
the catalog row as the rest of Parley (the chat engine, the gateway) sees it."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from parley.core.validation import StorableText
from parley.llm.models import CatalogModel
from parley.usage.pricing import cost_usd

OFFLINE_PROVIDER = "offline"
OFFLINE_MODEL_ID = "offline:parley"
# The built-in embedding model (`parley.llm.offline.embedder`): an entry of the embedding catalog.
OFFLINE_EMBEDDING_MODEL_ID = "offline:embed"

# StorableText: a NUL or a lone surrogate in a name is a 422, not a failure of the database.
ModelName = Annotated[
    StorableText, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)
]
Price = Annotated[
    Decimal,
    Field(ge=0, max_digits=12, decimal_places=6, description="USD per million tokens."),
]


class CatalogEntry(BaseModel):
    """One catalog entry, detached from the database session.

    Attributes:
        id: the catalog id, `<provider>:<model>`.
        model_name: the provider's own name for the model (the part after the first `:`).
    """

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    provider: str
    model_name: str
    context_window: int | None
    supports_tools: bool
    input_price_per_mtok: Decimal
    output_price_per_mtok: Decimal
    enabled: bool
    is_default: bool

    @classmethod
    def from_row(cls, row: CatalogModel) -> CatalogEntry:
        """The entry of a catalog row."""
        return cls(
            id=row.model_id,
            name=row.name,
            provider=row.provider,
            model_name=row.model_name,
            context_window=row.context_window,
            supports_tools=row.supports_tools,
            input_price_per_mtok=row.input_price_per_mtok,
            output_price_per_mtok=row.output_price_per_mtok,
            enabled=row.enabled,
            is_default=row.is_default,
        )

    def cost_usd(self, input_tokens: int, output_tokens: int) -> Decimal:
        """What this many tokens cost at the entry's prices."""
        return cost_usd(
            input_tokens,
            output_tokens,
            input_price_per_mtok=self.input_price_per_mtok,
            output_price_per_mtok=self.output_price_per_mtok,
        )


class ModelPublic(BaseModel):
    """A catalog entry as clients see it."""

    id: str = Field(description="`<provider>:<model>`.", examples=["openai:gpt-4o-mini"])
    name: str
    provider: str = Field(examples=["openai", "anthropic", "gemini", "offline"])
    context_window: int | None = Field(description="Tokens in and out; null when unknown.")
    supports_tools: bool
    input_price_per_mtok: float = Field(description="USD per million input tokens.")
    output_price_per_mtok: float = Field(description="USD per million output tokens.")
    is_default: bool = Field(description="Used when a chat names no model.")
    enabled: bool = Field(description="Only admins see disabled entries.")

    @classmethod
    def from_entry(cls, entry: CatalogEntry) -> ModelPublic:
        """The public view of a catalog entry."""
        return cls(
            id=entry.id,
            name=entry.name,
            provider=entry.provider,
            context_window=entry.context_window,
            supports_tools=entry.supports_tools,
            input_price_per_mtok=float(entry.input_price_per_mtok),
            output_price_per_mtok=float(entry.output_price_per_mtok),
            is_default=entry.is_default,
            enabled=entry.enabled,
        )


class ModelUpdate(BaseModel):
    """An admin's change to a catalog entry; fields left out stay as they are (none may be null).

    `is_default: true` moves the default here (atomically); `is_default: false` is refused on the
    default itself (choose another default instead), as is disabling the default.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool | None = None
    is_default: bool | None = None
    input_price_per_mtok: Price | None = None
    output_price_per_mtok: Price | None = None
    name: ModelName | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Left out means "unchanged"; an explicit null would have no meaning for these fields.
        if value is None:
            raise ValueError("may not be null; leave the field out to keep its value")
        return value
