"""The catalog as each worker remembers it: every `/v1` call and chat turn names a model, and
reading the small catalog table for each was a statement before the first token.

A `CatalogCache` holds a snapshot of the visible entries (one query loads them all) and reloads
it when it is older than `CATALOG_CACHE_SECONDS`, or sooner when the catalog changed in this
process: an admin's change and seeding call `catalog_changed()`, which every cache of the
process sees at once. Another worker's change reaches this one within `CATALOG_CACHE_SECONDS`;
`0` turns the cache off (every lookup reads the table).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import anyio
from sqlalchemy.ext.asyncio import AsyncSession

from parley.llm import repository
from parley.llm.schemas import CatalogEntry

_generation = 0


def catalog_changed() -> None:
    """Tell every catalog cache of this process that the catalog table changed."""
    global _generation
    _generation += 1


@dataclass(frozen=True, slots=True)
class CatalogSnapshot:
    """The visible entries (their providers are configured), enabled or not.

    Attributes:
        by_id: every visible entry by catalog id.
        enabled: the enabled ones, in catalog order.
        default: the entry marked default, if it is visible and enabled.
    """

    by_id: dict[str, CatalogEntry]
    enabled: list[CatalogEntry]
    default: CatalogEntry | None

    @classmethod
    async def load(cls, session: AsyncSession) -> CatalogSnapshot:
        """Read the visible entries in one query."""
        entries = [CatalogEntry.from_row(row) for row in await repository.list_visible(session)]
        enabled = [entry for entry in entries if entry.enabled]
        default = next((entry for entry in enabled if entry.is_default), None)
        return cls({entry.id: entry for entry in entries}, enabled, default)


class CatalogCache:
    """A worker's snapshot of the catalog, reloaded when stale or changed.

    Args:
        ttl_seconds: how long a snapshot serves; 0 reads the table every time.
    """

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl_seconds = ttl_seconds
        self._snapshot: CatalogSnapshot | None = None
        self._loaded_at = 0.0
        self._loaded_generation = -1
        self._lock = anyio.Lock()

    def _fresh(self) -> CatalogSnapshot | None:
        if (
            self._snapshot is not None
            and self._loaded_generation == _generation
            and time.monotonic() - self._loaded_at < self.ttl_seconds
        ):
            return self._snapshot
        return None

    async def snapshot(self, session: AsyncSession) -> CatalogSnapshot:
        """The current snapshot, read through `session` when stale."""
        snapshot = self._fresh()
        if snapshot is not None:
            return snapshot
        if self.ttl_seconds <= 0:
            return await CatalogSnapshot.load(session)
        async with self._lock:  # one reload for the callers that found it stale together
            snapshot = self._fresh()
            if snapshot is not None:
                return snapshot
            generation = _generation
            loaded_at = time.monotonic()
            snapshot = await CatalogSnapshot.load(session)
            self._snapshot = snapshot
            self._loaded_at = loaded_at
            # A change made while the table was read is seen by the next lookup.
            self._loaded_generation = generation
            return snapshot
