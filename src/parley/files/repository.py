"""Queries over files and storage usage. Never commits.

Every read of a file starts from `readable(owner_id)`: there is no unscoped way to reach one.
Storage usage changes only through `reserve_bytes` (a conditional UPDATE that refuses to pass the
quota, so two concurrent uploads cannot both slip under it) and `release_bytes`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.core.db import insert_of, rowcount, utcnow
from parley.core.pagination import CursorCodec, SortKey, paginate
from parley.files.models import StorageUsage, StoredFile

FILES_NEWEST_FIRST = SortKey("-created_at", StoredFile.created_at, descending=True)


def readable(owner_id: uuid.UUID) -> Select[StoredFile]:
    """The owner's files: the start of every file read."""
    return select(StoredFile).where(StoredFile.owner_id == owner_id)


async def get_file(
    session: AsyncSession, owner_id: uuid.UUID, file_id: uuid.UUID
) -> StoredFile | None:
    """One of the owner's files."""
    return (
        await session.execute(readable(owner_id).where(StoredFile.id == file_id))
    ).scalar_one_or_none()


async def get_files(
    session: AsyncSession, owner_id: uuid.UUID, file_ids: Sequence[uuid.UUID]
) -> list[StoredFile]:
    """The owner's files among `file_ids` (others' and unknown ids are left out)."""
    if not file_ids:
        return []
    rows = await session.execute(readable(owner_id).where(StoredFile.id.in_(list(file_ids))))
    return list(rows.scalars().all())


async def list_files(
    session: AsyncSession,
    owner_id: uuid.UUID,
    *,
    codec: CursorCodec,
    cursor: str | None,
    limit: int,
    status: str | None = None,
    among: Select[uuid.UUID] | None = None,
) -> tuple[list[StoredFile], str | None]:
    """A page of the owner's files, newest first (only those whose ids `among` selects, if
    given)."""
    statement = readable(owner_id)
    if status is not None:
        statement = statement.where(StoredFile.status == status)
    if among is not None:
        statement = statement.where(StoredFile.id.in_(among))
    statement, finish = paginate(
        statement,
        sort=FILES_NEWEST_FIRST,
        id_column=StoredFile.id,
        cursor=cursor,
        limit=limit,
        codec=codec,
    )
    rows = (await session.execute(statement)).scalars().all()
    return finish(rows)


async def blob_still_used(
    session: AsyncSession, owner_id: uuid.UUID, sha256: str, *, besides: uuid.UUID
) -> bool:
    """Whether another of the owner's files has these bytes."""
    other = await session.execute(
        select(StoredFile.id)
        .where(
            StoredFile.owner_id == owner_id,
            StoredFile.sha256 == sha256,
            StoredFile.id != besides,
        )
        .limit(1)
    )
    return other.first() is not None


async def reserve_bytes(
    session: AsyncSession, owner_id: uuid.UUID, size: int, *, quota: int
) -> bool:
    """Count `size` more bytes to the owner unless that passes `quota`; whether it was counted."""
    await session.execute(
        insert_of(session, StorageUsage)
        .values(owner_id=owner_id, bytes_used=0, updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=["owner_id"])
    )
    result = await session.execute(
        update(StorageUsage)
        .where(
            StorageUsage.owner_id == owner_id,
            StorageUsage.bytes_used + size <= quota,
        )
        .values(bytes_used=StorageUsage.bytes_used + size, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return rowcount(result) == 1


async def release_bytes(session: AsyncSession, owner_id: uuid.UUID, size: int) -> None:
    """Count `size` fewer bytes to the owner (never below zero)."""
    await session.execute(
        update(StorageUsage)
        .where(StorageUsage.owner_id == owner_id)
        .values(
            bytes_used=func.max(StorageUsage.bytes_used - size, 0)
            if session.get_bind().dialect.name == "sqlite"
            else func.greatest(StorageUsage.bytes_used - size, 0),
            updated_at=utcnow(),
        )
        .execution_options(synchronize_session=False)
    )


async def bytes_used(session: AsyncSession, owner_id: uuid.UUID) -> int:
    """How many bytes the owner's files take."""
    used = await session.scalar(
        select(StorageUsage.bytes_used).where(StorageUsage.owner_id == owner_id)
    )
    return int(used or 0)
