"""Bringing the catalog table in line with the configuration at start-up, without undoing what
admins changed.

For each entry the configuration offers: a new row is inserted as configured; an existing row gets
the provider-derived fields (provider, model name, context window, tool support, order) and becomes
available again, and the admin-editable fields (name, prices, enabled) unless an admin set them
(`admin_overrides`). Rows the configuration no longer offers become unavailable (hidden), not
deleted. The default stays where an admin put it while that entry is available and enabled;
otherwise it goes to the configured default (`DEFAULT_MODEL`, else the first configured provider's
first model, else the offline model), or the first usable entry after it.
"""

from __future__ import annotations

import logging

import httpx2
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.core.db import Database
from parley.llm import repository
from parley.llm.cache import catalog_changed
from parley.llm.catalog_config import CatalogPlan, CatalogSpec, load_models_file, plan_catalog
from parley.llm.discovery import discover_models
from parley.llm.models import CatalogModel
from parley.llm.schemas import OFFLINE_MODEL_ID
from parley.settings import Settings

logger = logging.getLogger(__name__)

CONFIGURED_FIELDS = ("name", "input_price_per_mtok", "output_price_per_mtok", "enabled")
SEED_ATTEMPTS = 3


def _new_row(spec: CatalogSpec) -> CatalogModel:
    return CatalogModel(
        model_id=spec.model_id,
        provider=spec.provider,
        model_name=spec.model_name,
        name=spec.name,
        context_window=spec.context_window,
        supports_tools=spec.supports_tools,
        input_price_per_mtok=spec.input_price_per_mtok,
        output_price_per_mtok=spec.output_price_per_mtok,
        enabled=spec.enabled,
        is_default=False,
        available=True,
        position=spec.position,
        admin_overrides=[],
    )


def _update_row(row: CatalogModel, spec: CatalogSpec) -> None:
    row.provider = spec.provider
    row.model_name = spec.model_name
    row.context_window = spec.context_window
    row.supports_tools = spec.supports_tools
    row.position = spec.position
    row.available = True
    for field in CONFIGURED_FIELDS:
        if field not in row.admin_overrides:
            setattr(row, field, getattr(spec, field))


def _choose_default(rows: dict[str, CatalogModel], plan: CatalogPlan) -> CatalogModel:
    current = next((row for row in rows.values() if row.is_default), None)
    if (
        current is not None
        and "is_default" in current.admin_overrides
        and current.available
        and current.enabled
    ):
        return current
    preference = [plan.default_model_id, *(spec.model_id for spec in plan.entries)]
    for model_id in preference:
        row = rows.get(model_id)
        if row is not None and row.available and row.enabled:
            return row
    # Every entry disabled (by admins): the offline model is re-enabled rather than leave none.
    offline = rows[OFFLINE_MODEL_ID]
    logger.warning("every catalog entry is disabled; re-enabling the offline model as the default")
    offline.enabled = True
    offline.admin_overrides = [f for f in offline.admin_overrides if f != "enabled"]
    return offline


async def seed_catalog(session: AsyncSession, plan: CatalogPlan) -> None:
    """Make the catalog table match `plan` (see the module docstring) and commit."""
    rows = {row.model_id: row for row in await repository.all_entries(session)}
    planned = {spec.model_id for spec in plan.entries}
    for spec in plan.entries:
        row = rows.get(spec.model_id)
        if row is None:
            rows[spec.model_id] = repository.add_entry(session, _new_row(spec))
        else:
            _update_row(row, spec)
    for model_id, row in rows.items():
        if model_id not in planned and row.available:
            row.available = False
    await session.flush()
    await repository.move_default(session, _choose_default(rows, plan))
    await session.commit()
    catalog_changed()


async def prepare_catalog(
    settings: Settings, database: Database, http_client: httpx2.AsyncClient
) -> CatalogPlan:
    """Read the models file, ask the providers that need it for their models, and seed.

    Several workers starting at once may seed together; a worker that loses a race on a unique
    key tries again on what the winner wrote.

    Raises:
        CatalogConfigError: the models file is set but cannot be used.
    """
    file_entries = load_models_file(settings.models_file) if settings.models_file else []
    discovered = await discover_models(settings, http_client, file_entries)
    plan = plan_catalog(settings, file_entries=file_entries, discovered=discovered)
    for attempt in range(1, SEED_ATTEMPTS + 1):
        async with database.sessionmaker() as session:
            try:
                await seed_catalog(session, plan)
            except IntegrityError:
                await session.rollback()
                if attempt == SEED_ATTEMPTS:
                    raise
                logger.info("catalog seeding raced another worker; trying again")
            else:
                break
    logger.info(
        "model catalog: %d entries configured (configured default %s)",
        len(plan.entries),
        plan.default_model_id,
    )
    return plan
