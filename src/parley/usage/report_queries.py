"""The queries behind the usage reports: a user's totals over a window, grouped by day, model or
API key; every user's totals, a page at a time; and a user's records, newest first. Reads only:
the records are written by `usage.repository.add_records`."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

from sqlalchemy import Date, Select, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.accounts.models import User
from parley.core.pagination import CursorCodec, SortKey, paginate
from parley.usage.models import UsageRecord

RECORDS_NEWEST_FIRST = SortKey("-created_at", UsageRecord.created_at, descending=True)
USERS_BY_ID = SortKey("user_id", User.id, descending=False, kind="uuid")
GroupBy = Literal["day", "model", "api_key"]


@dataclass(frozen=True, slots=True)
class UsageSums:
    """Totals over some records."""

    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    requests: int


SelectT = TypeVar("SelectT", bound=Select)  # type: ignore[type-arg]


def _window(statement: SelectT, start: datetime, end: datetime) -> SelectT:
    return statement.where(UsageRecord.created_at >= start, UsageRecord.created_at < end)


_SUMS = (
    func.coalesce(func.sum(UsageRecord.input_tokens), 0),
    func.coalesce(func.sum(UsageRecord.output_tokens), 0),
    func.coalesce(func.sum(UsageRecord.cost_usd), 0),
    func.count(UsageRecord.id),
)


def _sums(row: Any, offset: int = 0) -> UsageSums:
    return UsageSums(
        input_tokens=int(row[offset]),
        output_tokens=int(row[offset + 1]),
        cost_usd=Decimal(str(row[offset + 2])),
        requests=int(row[offset + 3]),
    )


def _day(session: AsyncSession) -> Any:
    """The UTC calendar day of a record, as the database computes it."""
    if session.get_bind().dialect.name == "postgresql":
        return cast(func.timezone("UTC", UsageRecord.created_at), Date)
    return func.date(UsageRecord.created_at)  # SQLite stores UTC text: its date part


async def totals(
    session: AsyncSession, user_id: uuid.UUID, start: datetime, end: datetime
) -> UsageSums:
    """The user's totals in `[start, end)`."""
    statement = _window(select(*_SUMS).where(UsageRecord.user_id == user_id), start, end)
    return _sums((await session.execute(statement)).one())


async def grouped(
    session: AsyncSession, user_id: uuid.UUID, start: datetime, end: datetime, group_by: GroupBy
) -> list[tuple[str | None, UsageSums]]:
    """The user's totals in `[start, end)` per day, model or API key (None: no key), in order."""
    key: Any
    if group_by == "day":
        key = _day(session)
    elif group_by == "model":
        key = UsageRecord.model_id
    else:
        key = UsageRecord.api_key_id
    statement = _window(
        select(key, *_SUMS).where(UsageRecord.user_id == user_id).group_by(key).order_by(key),
        start,
        end,
    )
    rows = (await session.execute(statement)).all()
    return [(None if row[0] is None else str(row[0]), _sums(row, 1)) for row in rows]


async def per_user(
    session: AsyncSession,
    start: datetime,
    end: datetime,
    *,
    codec: CursorCodec,
    cursor: str | None,
    limit: int,
) -> tuple[list[tuple[User, UsageSums]], str | None]:
    """Every user's totals in `[start, end)` (users without usage included, at zero), by user."""
    sums = _window(
        select(UsageRecord.user_id.label("user_id"), *_SUMS).group_by(UsageRecord.user_id),
        start,
        end,
    ).subquery()
    statement, finish = paginate(
        select(User, sums).outerjoin(sums, sums.c.user_id == User.id),
        sort=USERS_BY_ID,
        id_column=User.id,
        cursor=cursor,
        limit=limit,
        codec=codec,
    )
    rows = (await session.execute(statement)).all()
    page, next_cursor = finish([_UserRow(row) for row in rows])
    return [(row.user, row.sums) for row in page], next_cursor


class _UserRow:
    """A row of `per_user`, shaped for `PageFinisher` (which reads `id` and the sort column)."""

    def __init__(self, row: Any) -> None:
        self.user: User = row[0]
        self.id = self.user.id
        values = tuple(row[2:])
        self.sums = _sums(tuple(0 if value is None else value for value in values))


async def list_records(
    session: AsyncSession,
    user_id: uuid.UUID,
    *,
    source: str | None,
    api_key_id: uuid.UUID | None,
    codec: CursorCodec,
    cursor: str | None,
    limit: int,
) -> tuple[list[UsageRecord], str | None]:
    """A page of the user's records, newest first."""
    statement = select(UsageRecord).where(UsageRecord.user_id == user_id)
    if source is not None:
        statement = statement.where(UsageRecord.source == source)
    if api_key_id is not None:
        statement = statement.where(UsageRecord.api_key_id == api_key_id)
    statement, finish = paginate(
        statement,
        sort=RECORDS_NEWEST_FIRST,
        id_column=UsageRecord.id,
        cursor=cursor,
        limit=limit,
        codec=codec,
    )
    return finish((await session.execute(statement)).scalars().all())
