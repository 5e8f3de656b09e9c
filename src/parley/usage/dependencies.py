"""The usage meter, the usage service, and the reporting window of a route."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import Depends, Query, Request

from parley.core.db import utcnow
from parley.core.dependencies import SessionDep, cursor_codec_of, settings_of
from parley.core.errors import ValidationFailed
from parley.usage.meter import UsageMeter
from parley.usage.periods import month_start
from parley.usage.service import UsageService

MAX_BOUND_CHARS = 64


def usage_meter_of(request: Request) -> UsageMeter:
    """The running app's usage meter."""
    meter: UsageMeter = request.app.state.usage_meter
    return meter


async def get_usage_service(request: Request, session: SessionDep) -> UsageService:
    """Usage reports over the route's session."""
    return UsageService(
        session, settings_of(request), cursor_codec_of(request), usage_meter_of(request)
    )


UsageServiceDep = Annotated[UsageService, Depends(get_usage_service)]


@dataclass(frozen=True, slots=True)
class UsageWindow:
    """A reporting window `[start, end)` in UTC."""

    start: datetime
    end: datetime


def _parse_bound(value: str, field: str, *, end: bool) -> datetime:
    """A date (`2026-11-01`: the whole day, so a date `to` includes that day) or an RFC 3339
    time; a time without an offset is taken as UTC."""
    try:
        if len(value) == len("2026-11-01"):
            day = date.fromisoformat(value)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        moment = datetime.fromisoformat(value)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValidationFailed.for_field(
            f"query.{field}", "Expected a date (2026-11-01) or an RFC 3339 time."
        ) from None


async def get_usage_window(
    from_: Annotated[
        str | None,
        Query(
            alias="from",
            max_length=MAX_BOUND_CHARS,
            description="Start (inclusive): a date or RFC 3339 time; default: this month's start.",
        ),
    ] = None,
    to: Annotated[
        str | None,
        Query(
            max_length=MAX_BOUND_CHARS,
            description="End: a date (that whole day included) or RFC 3339 time (exclusive); "
            "default: now.",
        ),
    ] = None,
) -> UsageWindow:
    """The window a report covers (this month so far by default)."""
    now = utcnow()
    start = _parse_bound(from_, "from", end=False) if from_ else month_start(now)
    end = _parse_bound(to, "to", end=True) if to else now + timedelta(seconds=1)
    if end <= start:
        raise ValidationFailed.for_field("query.to", "`to` must come after `from`.")
    return UsageWindow(start, end)


UsageWindowDep = Annotated[UsageWindow, Depends(get_usage_window)]
