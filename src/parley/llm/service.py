"""Model catalog use cases: listing it (`GET /api/models`), an admin's changes to an entry
(`PATCH /api/admin/models/{id}`), and `LLMService`, which the chat engine and the gateway call to
turn a model id (or none: the default) into a catalog entry and that entry into a Pydantic AI model.

Each public method is one use case and commits at most once. Errors are Parley errors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.accounts.models import User
from parley.core.errors import Conflict, Forbidden, NotFound, ValidationFailed
from parley.core.pagination import CursorCodec
from parley.core.telemetry import traced
from parley.llm import repository
from parley.llm.cache import CatalogCache, catalog_changed
from parley.llm.catalog_config import OFFLINE_CONTEXT_WINDOW, OFFLINE_NAME
from parley.llm.providers import ModelProviders
from parley.llm.schemas import OFFLINE_MODEL_ID, OFFLINE_PROVIDER, CatalogEntry

if TYPE_CHECKING:
    from pydantic_ai.models import Model

# Fields an admin may set (with `is_default`); once set, start-up seeding leaves them alone.
EDITABLE_FIELDS = ("name", "enabled", "input_price_per_mtok", "output_price_per_mtok")

OFFLINE_ENTRY = CatalogEntry(
    id=OFFLINE_MODEL_ID,
    name=OFFLINE_NAME,
    provider=OFFLINE_PROVIDER,
    model_name=OFFLINE_MODEL_ID.partition(":")[2],
    context_window=OFFLINE_CONTEXT_WINDOW,
    supports_tools=True,
    input_price_per_mtok=Decimal(0),
    output_price_per_mtok=Decimal(0),
    enabled=True,
    is_default=True,
)


class ModelUnavailable(ValidationFailed):
    """The requested model is not in the catalog, or is disabled."""

    default_message = "This model is not available."


class CatalogService:
    """The catalog as users and admins see it, over one database session."""

    def __init__(self, session: AsyncSession, codec: CursorCodec) -> None:
        self.session = session
        self.codec = codec

    @traced
    async def list_models(
        self, user: User, *, include_disabled: bool, cursor: str | None, limit: int
    ) -> tuple[list[CatalogEntry], str | None]:
        """A page of the catalog: enabled entries, or every entry for an admin who asks.

        Raises:
            Forbidden: `include_disabled` asked by someone who is not an admin.
        """
        if include_disabled and not user.is_admin:
            raise Forbidden("Only admins may list disabled models.")
        rows, next_cursor = await repository.list_entries(
            self.session,
            include_disabled=include_disabled,
            codec=self.codec,
            cursor=cursor,
            limit=limit,
        )
        return [CatalogEntry.from_row(row) for row in rows], next_cursor

    @traced
    async def update_model(self, model_id: str, changes: Mapping[str, Any]) -> CatalogEntry:
        """Apply an admin's changes to one entry and remember them as the admin's.

        Args:
            model_id: the catalog id.
            changes: the fields sent (`enabled`, `is_default`, prices, `name`); none is None.

        Raises:
            NotFound: no such entry (or its provider is not configured).
            Conflict: the change would leave no usable default: disabling the default, clearing
                `is_default` on it, or making a disabled entry the default.
        """
        row = await repository.get_visible(self.session, model_id)
        if row is None:
            raise NotFound("No such model in the catalog.")
        enabled = changes.get("enabled", row.enabled)
        make_default = changes.get("is_default")
        if make_default is False and row.is_default:
            raise Conflict("There must be a default model: make another model the default instead.")
        if make_default and not enabled:
            raise Conflict("A disabled model cannot be the default: enable it too.")
        if not enabled and row.is_default:
            raise Conflict("This is the default model: make another model the default first.")
        overrides = list(row.admin_overrides)
        for field in EDITABLE_FIELDS:
            if field in changes:
                setattr(row, field, changes[field])
                overrides.append(field)
        try:
            # `is_default: false` on an entry that is not the default changes nothing.
            if make_default:
                await repository.move_default(self.session, row)
                overrides.append("is_default")
            row.admin_overrides = sorted(set(overrides))
            await self.session.commit()
            catalog_changed()
        except IntegrityError as exc:
            # Another admin moved the default at the same moment; the unique index kept one.
            await self.session.rollback()
            raise Conflict("The default model changed meanwhile; try again.") from exc
        await self.session.refresh(row)
        return CatalogEntry.from_row(row)


async def catalog_prices(
    session: AsyncSession, model_ids: Sequence[str]
) -> dict[str, tuple[Decimal, Decimal]]:
    """The input and output prices per million tokens of these catalog models, enabled or not:
    what a reply that ended without its running turn is billed at (the turn runner's sweep)."""
    return await repository.prices_of(session, model_ids)


class LLMService:
    """What the chat engine asks of the catalog: which entry a chat uses, and its model.

    Args:
        session: a database session (only read, and only when the catalog cache is stale).
        providers: builds Pydantic AI models (app-wide, shares the HTTP client).
        catalog: the worker's catalog cache.
    """

    def __init__(
        self, session: AsyncSession, providers: ModelProviders, catalog: CatalogCache
    ) -> None:
        self.session = session
        self.providers = providers
        self.catalog = catalog

    async def default_entry(self) -> CatalogEntry:
        """The default entry; the first enabled one if the default is unusable; the offline
        model if the catalog has none (it is not seeded)."""
        snapshot = await self.catalog.snapshot(self.session)
        if snapshot.default is not None:
            return snapshot.default
        return snapshot.enabled[0] if snapshot.enabled else OFFLINE_ENTRY

    async def resolve(self, model_id: str | None, *, field: str = "body.model_id") -> CatalogEntry:
        """The catalog entry a request names, or the default when it names none.

        The offline model is always there: an empty (unseeded) catalog still resolves it, unless
        an admin disabled it.

        Args:
            model_id: a catalog id, or None for the default.
            field: where the id came from, named in the validation error.

        Raises:
            ModelUnavailable: no enabled entry has this id (a 422 naming `field`).
        """
        if model_id is None:
            return await self.default_entry()
        entry = (await self.catalog.snapshot(self.session)).by_id.get(model_id)
        if entry is None and model_id == OFFLINE_MODEL_ID:
            return OFFLINE_ENTRY  # always offered, even before the catalog is seeded
        if entry is None or not entry.enabled:
            raise ModelUnavailable(
                f"No enabled model has the id {model_id!r}; GET /api/models lists them.",
                details=[{"field": field, "message": "unknown or disabled model"}],
            )
        return entry

    async def list_enabled(self) -> list[CatalogEntry]:
        """Every enabled entry, in catalog order (the gateway's `/v1/models`)."""
        return list((await self.catalog.snapshot(self.session)).enabled)

    def model_for(self, entry: CatalogEntry) -> Model:
        """The Pydantic AI model that answers for `entry`."""
        return self.providers.model_for(entry)
