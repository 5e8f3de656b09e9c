"""Usage queries: records, the per-month totals that budgets check, reservations, and the
aggregates behind the reports. Functions take a session, add and flush; they never commit.

Budget arithmetic is done by the database in single statements (an upsert, a conditional update),
so that concurrent requests of one user serialise on their month's row on SQLite and PostgreSQL
alike: PostgreSQL re-checks an `UPDATE ... WHERE` against the row as the previous writer left it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, TypeVar

from sqlalchemy import Date, Select, cast, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from parley.accounts.models import User
from parley.core.db import new_id, utcnow
from parley.core.pagination import CursorCodec, SortKey, paginate
from parley.usage.models import BudgetPeriod, BudgetReservation, UsageRecord

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


def _insert(session: AsyncSession) -> Any:
    """The dialect's INSERT, which has `on_conflict_do_*` on both databases."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert


# -- budgets ----------------------------------------------------------------------------------


async def ensure_period(session: AsyncSession, user_id: uuid.UUID, period: str) -> None:
    """Create the user's row for `period` if it does not exist yet."""
    now = utcnow()
    statement = (
        _insert(session)(BudgetPeriod)
        .values(
            id=new_id(),
            user_id=user_id,
            period=period,
            spent_usd=Decimal(0),
            reserved_usd=Decimal(0),
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["user_id", "period"])
    )
    await session.execute(statement)


async def hold(
    session: AsyncSession, user_id: uuid.UUID, period: str, amount: Decimal, budget: Decimal
) -> bool:
    """Add `amount` to the period's reservations if spent and reserved are below `budget`.

    Returns:
        Whether the reservation was taken (False: the budget is spent or fully reserved).
    """
    result = await session.execute(
        update(BudgetPeriod)
        .where(
            BudgetPeriod.user_id == user_id,
            BudgetPeriod.period == period,
            BudgetPeriod.spent_usd + BudgetPeriod.reserved_usd < budget,
        )
        .values(reserved_usd=BudgetPeriod.reserved_usd + amount, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return bool(getattr(result, "rowcount", 0) == 1)


def add_reservation(session: AsyncSession, reservation: BudgetReservation) -> BudgetReservation:
    """Record a reservation (flushed with the session)."""
    session.add(reservation)
    return reservation


async def release(session: AsyncSession, reservation_id: uuid.UUID) -> bool:
    """Delete a reservation and take its amount off its period's total, once: of a settle and a
    sweep racing for one reservation, only the one whose delete found the row changes the total.

    Returns:
        Whether this call released it.
    """
    deleted = (
        await session.execute(
            delete(BudgetReservation)
            .where(BudgetReservation.id == reservation_id)
            .returning(
                BudgetReservation.user_id, BudgetReservation.period, BudgetReservation.amount_usd
            )
        )
    ).one_or_none()
    if deleted is None:
        return False
    user_id, period, amount = deleted
    await session.execute(
        update(BudgetPeriod)
        .where(BudgetPeriod.user_id == user_id, BudgetPeriod.period == period)
        .values(reserved_usd=BudgetPeriod.reserved_usd - amount, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return True


async def add_spend(session: AsyncSession, user_id: uuid.UUID, period: str, cost: Decimal) -> None:
    """Add a settled cost to the user's period (creating its row)."""
    now = utcnow()
    insert = _insert(session)(BudgetPeriod).values(
        id=new_id(),
        user_id=user_id,
        period=period,
        spent_usd=cost,
        reserved_usd=Decimal(0),
        created_at=now,
        updated_at=now,
    )
    statement = insert.on_conflict_do_update(
        index_elements=["user_id", "period"],
        set_={"spent_usd": BudgetPeriod.spent_usd + insert.excluded.spent_usd, "updated_at": now},
    )
    await session.execute(statement)


async def get_period(session: AsyncSession, user_id: uuid.UUID, period: str) -> BudgetPeriod | None:
    """The user's row for `period`, read afresh."""
    result = await session.execute(
        select(BudgetPeriod)
        .where(BudgetPeriod.user_id == user_id, BudgetPeriod.period == period)
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


async def expired_reservations(
    session: AsyncSession, now: datetime, limit: int = 500
) -> list[uuid.UUID]:
    """Reservations whose request never settled them (oldest first)."""
    result = await session.execute(
        select(BudgetReservation.id)
        .where(BudgetReservation.expires_at <= now)
        .order_by(BudgetReservation.expires_at)
        .limit(limit)
    )
    return list(result.scalars())


# -- records and reports ----------------------------------------------------------------------


def add_record(session: AsyncSession, record: UsageRecord) -> UsageRecord:
    """Record one reply's or call's usage (flushed with the session)."""
    session.add(record)
    return record


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
