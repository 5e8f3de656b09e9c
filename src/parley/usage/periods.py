"""Budget periods and a user's budget: a budget runs for a calendar month (UTC), and a user's is
their own or else `DEFAULT_MONTHLY_BUDGET_USD` (none: unlimited)."""

from __future__ import annotations

import calendar
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from parley.settings import Settings


def period_of(moment: datetime) -> str:
    """The budget period (calendar month, UTC) a moment falls in: `2026-11`."""
    return moment.astimezone(UTC).strftime("%Y-%m")


def month_start(moment: datetime) -> datetime:
    """Midnight UTC on the first day of the moment's month."""
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def next_month_start(moment: datetime) -> datetime:
    """Midnight UTC on the first day of the following month."""
    start = month_start(moment)
    return start + timedelta(days=calendar.monthrange(start.year, start.month)[1])


class BudgetHolder(Protocol):
    """What the meter reads of a user: an ORM `User`, or a `Caller` (plain values)."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def monthly_budget_usd(self) -> Decimal | None: ...


def monthly_budget(user: BudgetHolder, settings: Settings) -> Decimal | None:
    """The user's monthly budget: their own, else `DEFAULT_MONTHLY_BUDGET_USD`; None is
    unlimited."""
    if user.monthly_budget_usd is not None:
        return user.monthly_budget_usd
    return settings.default_monthly_budget_usd
