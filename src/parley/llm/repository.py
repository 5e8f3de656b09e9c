"""Queries over the model catalog. Never commits.

The catalog is shared, not user data, so there is no owner to scope by; what clients may see starts
from `visible()`: entries whose provider is configured now (`available`).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.core.pagination import CursorCodec, SortKey, paginate
from parley.llm.models import CatalogModel

CATALOG_ORDER = SortKey("position", CatalogModel.position, descending=False, kind="int")


def visible() -> Select[CatalogModel]:
    """Entries whose provider is configured, enabled or not."""
    return select(CatalogModel).where(CatalogModel.available.is_(True))


async def list_entries(
    session: AsyncSession,
    *,
    include_disabled: bool,
    codec: CursorCodec,
    cursor: str | None,
    limit: int,
) -> tuple[list[CatalogModel], str | None]:
    """A page of visible entries in catalog order (each provider's models as configured, the
    offline model last); disabled ones only when asked."""
    statement: Select[Any] = visible()
    if not include_disabled:
        statement = statement.where(CatalogModel.enabled.is_(True))
    statement, finish = paginate(
        statement,
        sort=CATALOG_ORDER,
        id_column=CatalogModel.id,
        cursor=cursor,
        limit=limit,
        codec=codec,
    )
    rows = (await session.execute(statement)).scalars().all()
    return finish(rows)


async def list_enabled(session: AsyncSession) -> list[CatalogModel]:
    """Every visible, enabled entry in catalog order."""
    statement = (
        visible()
        .where(CatalogModel.enabled.is_(True))
        .order_by(CatalogModel.position, CatalogModel.id)
    )
    return list((await session.execute(statement)).scalars().all())


async def list_visible(session: AsyncSession) -> list[CatalogModel]:
    """Every visible entry, enabled or not, in catalog order (the catalog cache's snapshot)."""
    statement = visible().order_by(CatalogModel.position, CatalogModel.id)
    return list((await session.execute(statement)).scalars().all())


async def get_visible(session: AsyncSession, model_id: str) -> CatalogModel | None:
    """The visible entry with this catalog id."""
    statement = visible().where(CatalogModel.model_id == model_id)
    return (await session.execute(statement)).scalar_one_or_none()


async def prices_of(
    session: AsyncSession, model_ids: Sequence[str]
) -> dict[str, tuple[Decimal, Decimal]]:
    """The input and output prices per million tokens of these entries, visible or not (what a
    reply that ended without its running turn is billed at)."""
    if not model_ids:
        return {}
    statement = select(
        CatalogModel.model_id, CatalogModel.input_price_per_mtok, CatalogModel.output_price_per_mtok
    ).where(CatalogModel.model_id.in_(list(model_ids)))
    return {row[0]: (row[1], row[2]) for row in await session.execute(statement)}


async def get_default(session: AsyncSession) -> CatalogModel | None:
    """The entry marked default, visible or not (seeding moves it off unavailable ones)."""
    statement = select(CatalogModel).where(CatalogModel.is_default.is_(True))
    return (await session.execute(statement)).scalar_one_or_none()


async def all_entries(session: AsyncSession) -> list[CatalogModel]:
    """Every row, available or not (for seeding)."""
    statement = select(CatalogModel).order_by(CatalogModel.position, CatalogModel.id)
    return list((await session.execute(statement)).scalars().all())


def add_entry(session: AsyncSession, entry: CatalogModel) -> CatalogModel:
    """Add a new row (flushed with the session)."""
    session.add(entry)
    return entry


async def move_default(session: AsyncSession, entry: CatalogModel) -> None:
    """Make `entry` the default: the old default is cleared and flushed first, so the unique index
    on the default never sees two."""
    current = await get_default(session)
    if current is entry:
        return
    if current is not None:
        current.is_default = False
        current.admin_overrides = [f for f in current.admin_overrides if f != "is_default"]
        await session.flush()
    entry.is_default = True
    await session.flush()
