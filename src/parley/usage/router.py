"""Usage over HTTP (CONTRACT.md section 5).

- `GET /api/usage` — the caller's totals in a window (`from`, `to`), grouped by `day`, `model` or
  `api_key` if asked, with this month's budget
- `GET /api/usage/records` — the caller's chat replies and `/v1` calls, newest first
- `GET /api/admin/usage` — every user's totals in a window, admins only
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from parley.accounts.dependencies import AdminUser, CurrentUser
from parley.core.dependencies import PageDep
from parley.core.errors import Forbidden, InvalidToken, NotAuthenticated
from parley.core.responses import Envelope, Page, error_responses, ok
from parley.usage.dependencies import UsageServiceDep, UsageWindowDep
from parley.usage.schemas import UsageRecordPublic, UsageReport, UserUsage

usage_router = APIRouter(prefix="/api/usage", tags=["usage"])
admin_usage_router = APIRouter(prefix="/api/admin/usage", tags=["admin"])

_AUTH_ERRORS = (NotAuthenticated, InvalidToken)


@usage_router.get(
    "",
    summary="Your usage",
    response_model=Envelope[UsageReport],
    responses=error_responses(*_AUTH_ERRORS),
)
async def get_usage(
    user: CurrentUser,
    usage: UsageServiceDep,
    window: UsageWindowDep,
    group_by: Annotated[
        Literal["day", "model", "api_key"] | None,
        Query(description="Group the totals by UTC day, by model, or by API key."),
    ] = None,
) -> Envelope[UsageReport]:
    """Tokens, cost and requests of your chat replies and `/v1` calls in `[from, to)` (default:
    this month so far), and where this month stands against your budget."""
    return ok(await usage.report(user, start=window.start, end=window.end, group_by=group_by))


@usage_router.get(
    "/records",
    summary="Your usage records",
    response_model=Envelope[Page[UsageRecordPublic]],
    responses=error_responses(*_AUTH_ERRORS),
)
async def list_usage_records(
    user: CurrentUser,
    usage: UsageServiceDep,
    page: PageDep,
    source: Annotated[
        Literal["chat", "v1"] | None, Query(description="Only chat replies, or only `/v1` calls.")
    ] = None,
    api_key_id: Annotated[
        uuid.UUID | None, Query(description="Only calls made with this API key.")
    ] = None,
) -> Envelope[Page[UsageRecordPublic]]:
    """Each chat reply and `/v1` call: model, key, tokens, cost and latency, newest first."""
    items, next_cursor = await usage.records(
        user, source=source, api_key_id=api_key_id, cursor=page.cursor, limit=page.limit
    )
    return ok(Page(items=items, next_cursor=next_cursor))


@admin_usage_router.get(
    "",
    summary="Usage per user",
    response_model=Envelope[Page[UserUsage]],
    responses=error_responses(*_AUTH_ERRORS, Forbidden),
)
async def admin_usage(
    admin: AdminUser, usage: UsageServiceDep, window: UsageWindowDep, page: PageDep
) -> Envelope[Page[UserUsage]]:
    """Every user's totals in `[from, to)` (default: this month so far), in order of user id
    (users without usage at zero). Admins only."""
    items, next_cursor = await usage.per_user(
        start=window.start, end=window.end, cursor=page.cursor, limit=page.limit
    )
    return ok(Page(items=items, next_cursor=next_cursor))
