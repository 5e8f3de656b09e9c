"""Usage writes and the budget's queries: records, the per-month totals that budgets check, and
reservations (the reports' aggregates are in `usage.report_queries`). Functions take a session,
add and flush; they never commit.

Budget arithmetic is done by the database in single statements (upserts, the hold's conditional),
so that concurrent requests of one user serialise on their month's row on SQLite and PostgreSQL
alike: PostgreSQL re-checks `ON CONFLICT DO UPDATE ... WHERE` against the row as the previous
writer left it.
"""

from __future__ import annotations

import functools
import typing
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ARRAY,
    Table,
    any_,
    bindparam,
    delete,
    func,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from parley.core.db import new_id, utcnow
from parley.usage.models import MONEY, BudgetPeriod, BudgetReservation, UsageRecord
from parley.usage.pricing import MAX_PERIOD_USD, ZERO


def _insert(session: AsyncSession) -> Any:
    """The dialect's INSERT, which has `on_conflict_do_*` on both databases."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert
    return sqlite.insert


# -- budgets ----------------------------------------------------------------------------------


# The budget's hot path (every `/v1` call and chat turn) runs Core statements on the tables: the
# ORM's unit of work and bulk paths cost more CPU than the statements themselves.
_PERIODS = typing.cast(Table, BudgetPeriod.__table__)
_RESERVATIONS = typing.cast(Table, BudgetReservation.__table__)
_RECORDS = typing.cast(Table, UsageRecord.__table__)


async def hold(
    session: AsyncSession,
    user_id: uuid.UUID,
    period: str,
    amount: Decimal,
    budget: Decimal,
    *,
    fit: bool = False,
) -> bool:
    """Add `amount` to the period's reservations if spent and reserved are below `budget`, in one
    upsert (creating the month's row with the hold as its first reservation).

    Args:
        fit: only if `amount` fits whole under the budget besides (a lease, which must not
            take the budget past its end; an `amount` above the budget is then refused).

    Returns:
        Whether the reservation was taken (False: the budget is spent or fully reserved).
    """
    if budget <= 0 or (fit and amount > budget):
        return False
    dialect = session.get_bind().dialect.name
    statement = _hold_statement(dialect, fit=fit and amount > 0)
    now = utcnow()
    parameters = {
        "b_id": new_id(),
        "b_user_id": user_id,
        "b_period": period,
        "b_amount": amount,
        "b_now": now,
        "b_budget": budget,
    }
    return (await session.execute(statement, parameters)).first() is not None


@functools.cache
def _hold_statement(dialect: str, *, fit: bool) -> Any:
    """`hold`'s upsert for a dialect, built once (its bind names carry a `b_` prefix: a column's
    own name is reserved for the VALUES clause)."""
    insert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(_PERIODS).values(
        id=bindparam("b_id", type_=_PERIODS.c.id.type),
        user_id=bindparam("b_user_id", type_=_PERIODS.c.user_id.type),
        period=bindparam("b_period", type_=_PERIODS.c.period.type),
        spent_usd=Decimal(0),
        reserved_usd=bindparam("b_amount", type_=_PERIODS.c.reserved_usd.type),
        created_at=bindparam("b_now", type_=_PERIODS.c.created_at.type),
        updated_at=bindparam("b_now", type_=_PERIODS.c.updated_at.type),
    )
    amount = bindparam("b_amount", type_=_PERIODS.c.reserved_usd.type)
    budget = bindparam("b_budget", type_=_PERIODS.c.reserved_usd.type)
    return insert.on_conflict_do_update(
        index_elements=["user_id", "period"],
        set_={
            "reserved_usd": _PERIODS.c.reserved_usd + insert.excluded.reserved_usd,
            "updated_at": bindparam("b_now", type_=_PERIODS.c.updated_at.type),
        },
        where=(
            _PERIODS.c.spent_usd + _PERIODS.c.reserved_usd + amount <= budget
            if fit
            else _PERIODS.c.spent_usd + _PERIODS.c.reserved_usd < budget
        ),
    ).returning(_PERIODS.c.id)


async def add_reservations(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Record reservations, in one statement: each row holds `id`, `user_id`, `period`,
    `amount_usd` and `expires_at`."""
    if not rows:
        return
    now = utcnow()
    await session.execute(
        _RESERVATIONS.insert(), [{"created_at": now, "updated_at": now, **row} for row in rows]
    )


async def take_reservations(
    session: AsyncSession, reservation_ids: Sequence[uuid.UUID]
) -> list[tuple[uuid.UUID, str, Decimal]]:
    """Delete reservations, once: of a settle and a sweep racing for one, only the one whose
    delete found the row gets it back (and must take its amount off its month's reservations).

    Returns:
        `(user_id, period, amount)` of each reservation found, now deleted.
    """
    if not reservation_ids:
        return []
    ids = list(reservation_ids)
    # PostgreSQL: one statement text whatever the count (an IN list of n parameters is a new
    # prepared statement for each n, churning asyncpg's statement cache).
    matches = (
        _RESERVATIONS.c.id == any_(bindparam("ids", ids, type_=ARRAY(_RESERVATIONS.c.id.type)))
        if session.get_bind().dialect.name == "postgresql"
        else _RESERVATIONS.c.id.in_(ids)
    )
    result = await session.execute(
        delete(_RESERVATIONS)
        .where(matches)
        .returning(_RESERVATIONS.c.user_id, _RESERVATIONS.c.period, _RESERVATIONS.c.amount_usd)
    )
    return [(row[0], row[1], row[2]) for row in result]


async def consume_reservations(
    session: AsyncSession, amounts: Mapping[uuid.UUID, Decimal]
) -> list[tuple[uuid.UUID, str, Decimal]]:
    """Take `amount` off each reservation (a lease whose calls spent it), one statement each, in
    a fixed order; a reservation already gone (`release_expired` took it) is skipped.

    Returns:
        `(user_id, period, amount)` of each reservation found, to take off its month's
        reservations as well.
    """
    consumed = []
    for reservation_id, amount in sorted(amounts.items(), key=lambda item: item[0].bytes):
        row = (
            await session.execute(
                update(_RESERVATIONS)
                .where(_RESERVATIONS.c.id == reservation_id)
                .values(
                    amount_usd=_RESERVATIONS.c.amount_usd - amount,
                    updated_at=utcnow(),
                )
                .returning(_RESERVATIONS.c.user_id, _RESERVATIONS.c.period)
            )
        ).first()
        if row is not None:
            consumed.append((row[0], row[1], amount))
    return consumed


async def adjust_period(
    session: AsyncSession,
    user_id: uuid.UUID,
    period: str,
    *,
    spent: Decimal = Decimal(0),
    reserved: Decimal = Decimal(0),
) -> None:
    """Add `spent` and `reserved` (either may be negative) to the user's period, in one upsert
    (creating its row). Both totals stay in `[0, MAX_PERIOD_USD]`: a release never leaves a
    negative reservation (floating-point sums on SQLite can land a hair below zero), and
    spending saturates at what the column holds instead of failing the write."""
    now = utcnow()
    insert = _insert(session)(_PERIODS).values(
        id=new_id(),
        user_id=user_id,
        period=period,
        spent_usd=min(max(spent, ZERO), MAX_PERIOD_USD),
        reserved_usd=min(max(reserved, ZERO), MAX_PERIOD_USD),
        created_at=now,
        updated_at=now,
    )
    postgres = session.get_bind().dialect.name == "postgresql"
    await session.execute(
        insert.on_conflict_do_update(
            index_elements=["user_id", "period"],
            set_={
                "spent_usd": _within_period_bounds(
                    _PERIODS.c.spent_usd + bindparam("spent_delta", spent, type_=MONEY), postgres
                ),
                "reserved_usd": _within_period_bounds(
                    _PERIODS.c.reserved_usd + bindparam("reserved_delta", reserved, type_=MONEY),
                    postgres,
                ),
                "updated_at": now,
            },
        )
    )


def _within_period_bounds(total: Any, postgres: bool) -> Any:
    """`total` clamped to `[0, MAX_PERIOD_USD]` in SQL: `GREATEST`/`LEAST` on PostgreSQL, the
    scalar `MAX`/`MIN` of two arguments on SQLite."""
    ceiling = literal(MAX_PERIOD_USD, MONEY)
    if postgres:
        return func.least(func.greatest(total, literal(ZERO, MONEY)), ceiling)
    return func.min(func.max(total, literal(ZERO, MONEY)), ceiling)


async def get_period(session: AsyncSession, user_id: uuid.UUID, period: str) -> BudgetPeriod | None:
    """The user's row for `period`, read afresh."""
    result = await session.execute(
        select(BudgetPeriod)
        .where(BudgetPeriod.user_id == user_id, BudgetPeriod.period == period)
        .execution_options(populate_existing=True)
    )
    return result.scalar_one_or_none()


async def reservations_of_messages(
    session: AsyncSession, message_ids: Sequence[uuid.UUID]
) -> list[tuple[uuid.UUID, uuid.UUID, uuid.UUID, Decimal]]:
    """The holds of these chat replies: `(reservation_id, message_id, user_id, amount)`."""
    if not message_ids:
        return []
    result = await session.execute(
        select(
            _RESERVATIONS.c.id,
            _RESERVATIONS.c.message_id,
            _RESERVATIONS.c.user_id,
            _RESERVATIONS.c.amount_usd,
        ).where(_RESERVATIONS.c.message_id.in_(list(message_ids)))
    )
    return [(row[0], row[1], row[2], row[3]) for row in result]


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


# -- records -------------------------------------------------------------------------------------


async def add_records(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Record replies' or calls' usage, in one statement: each row holds `UsageRecord`'s columns
    but the id (made here) and the times (now, unless the row gives `created_at`)."""
    if not rows:
        return
    now = utcnow()
    await session.execute(
        _RECORDS.insert(),
        [{"id": new_id(), "created_at": now, "updated_at": now} | row for row in rows],
    )
