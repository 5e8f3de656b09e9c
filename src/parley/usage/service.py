"""The usage reports (`UsageService`): this month's budget status, a user's totals over a window
(grouped by day, model or API key), every user's totals for admins, and a user's records."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from parley.accounts.models import User
from parley.core.db import utcnow
from parley.core.pagination import CursorCodec
from parley.core.telemetry import traced
from parley.settings import Settings
from parley.usage import report_queries, repository
from parley.usage.meter import UsageMeter
from parley.usage.periods import monthly_budget, next_month_start, period_of
from parley.usage.pricing import usd_for_display
from parley.usage.report_queries import GroupBy
from parley.usage.schemas import (
    BudgetStatus,
    UsageGroup,
    UsageRecordPublic,
    UsageReport,
    UsageTotals,
    UserUsage,
)


class UsageService:
    """Usage reports over one request session."""

    def __init__(
        self, session: AsyncSession, settings: Settings, codec: CursorCodec, meter: UsageMeter
    ) -> None:
        self.session = session
        self.settings = settings
        self.codec = codec
        self.meter = meter

    async def budget_status(self, user: User) -> BudgetStatus:
        """This month's spending against the user's budget."""
        await self.meter.flush()  # this worker's settles still queued
        now = utcnow()
        period = period_of(now)
        row = await repository.get_period(self.session, user.id, period)
        spent = row.spent_usd if row is not None else Decimal(0)
        reserved = row.reserved_usd if row is not None else Decimal(0)
        budget = monthly_budget(user, self.settings)
        return BudgetStatus(
            period=period,
            monthly_budget_usd=None if budget is None else usd_for_display(budget),
            spent_usd=usd_for_display(spent),
            reserved_usd=usd_for_display(reserved),
            remaining_usd=None if budget is None else usd_for_display(budget - spent),
            resets_at=next_month_start(now),
        )

    @traced(name="usage.report")
    async def report(
        self, user: User, *, start: datetime, end: datetime, group_by: GroupBy | None
    ) -> UsageReport:
        """The caller's totals in `[start, end)`, grouped if asked, and this month's budget."""
        await self.meter.flush()  # this worker's settles still queued
        sums = await report_queries.totals(self.session, user.id, start, end)
        groups = (
            [
                UsageGroup(key=key, **UsageTotals.of(group).model_dump())
                for key, group in await report_queries.grouped(
                    self.session, user.id, start, end, group_by
                )
            ]
            if group_by is not None
            else []
        )
        return UsageReport(
            from_=start,
            to=end,
            group_by=group_by,
            totals=UsageTotals.of(sums),
            groups=groups,
            budget=await self.budget_status(user),
        )

    @traced(name="usage.admin_report")
    async def per_user(
        self, *, start: datetime, end: datetime, cursor: str | None, limit: int
    ) -> tuple[list[UserUsage], str | None]:
        """Every user's totals in `[start, end)`, a page at a time."""
        await self.meter.flush()  # this worker's settles still queued
        rows, next_cursor = await report_queries.per_user(
            self.session, start, end, codec=self.codec, cursor=cursor, limit=limit
        )
        items = [
            UserUsage(
                user_id=user.id,
                email=user.email,
                display_name=user.display_name,
                monthly_budget_usd=(
                    None if user.monthly_budget_usd is None else float(user.monthly_budget_usd)
                ),
                **UsageTotals.of(sums).model_dump(),
            )
            for user, sums in rows
        ]
        return items, next_cursor

    async def records(
        self,
        user: User,
        *,
        source: str | None,
        api_key_id: uuid.UUID | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[UsageRecordPublic], str | None]:
        """A page of the caller's usage records, newest first."""
        await self.meter.flush()  # this worker's settles still queued
        rows, next_cursor = await report_queries.list_records(
            self.session,
            user.id,
            source=source,
            api_key_id=api_key_id,
            codec=self.codec,
            cursor=cursor,
            limit=limit,
        )
        return [UsageRecordPublic.of(row) for row in rows], next_cursor
