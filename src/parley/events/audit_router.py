"""The audit log over HTTP (CONTRACT.md section 11).

- `GET /api/audit` — the caller's own records (sign-ins, key changes, tool calls by the assistant
  or MCP with their arguments), newest first, with `action`, `since`, `until` and cursor paging
- `GET /api/admin/audit` — every user's records (or one user's, `user_id`); admins only, 403 for
  everyone else
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from parley.accounts.dependencies import AdminUser, CurrentUser
from parley.core.dependencies import PageDep, SessionDep, cursor_codec_of
from parley.core.errors import Forbidden, InvalidToken, NotAuthenticated, ValidationFailed
from parley.core.responses import Envelope, Page, error_responses, ok
from parley.core.validation import UtcDatetime
from parley.events.audit import AuditFilters, AuditLog
from parley.events.models import ACTION_MAX_CHARS

audit_router = APIRouter(prefix="/api/audit", tags=["audit"])
admin_audit_router = APIRouter(prefix="/api/admin/audit", tags=["admin"])


class AuditRecordPublic(BaseModel):
    """One line of the audit log."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    action: str = Field(
        description="What was done: `account.signed_in`, `account.upgraded`, "
        "`account.password_changed`, `api_key.created`, `api_key.revoked`, `tool.called`.",
        examples=["tool.called"],
    )
    user_id: uuid.UUID | None = Field(description="By whom (null once the account is deleted).")
    subject: str = Field(description="To what, e.g. `tools/add_task` or `api_keys/<id>`.")
    time: datetime = Field(description="When it happened.")
    details: dict[str, Any] = Field(
        description="The rest, as its event's `data` (bounded): how a sign-in was made, a key's "
        "name and prefix (never its secret), a tool call's surface, tool, arguments, status "
        "and duration."
    )


async def get_audit_log(request: Request, session: SessionDep) -> AuditLog:
    """Reads of the audit log over the route's session."""
    return AuditLog(session, cursor_codec_of(request))


AuditLogDep = Annotated[AuditLog, Depends(get_audit_log)]


async def get_audit_filters(
    action: Annotated[
        str | None,
        Query(
            max_length=ACTION_MAX_CHARS,
            pattern=r"^[a-z][a-z_]*(\.[a-z][a-z_]*)+$",
            description="Only records of this action (exact), e.g. `tool.called`.",
        ),
    ] = None,
    since: Annotated[
        UtcDatetime | None, Query(description="Only records of this time or later (RFC 3339).")
    ] = None,
    until: Annotated[
        UtcDatetime | None, Query(description="Only records before this time (RFC 3339).")
    ] = None,
) -> AuditFilters:
    """The allow-listed filters of an audit list; anything else in them is a 422."""
    return AuditFilters(action=action, since=since, until=until)


AuditFiltersDep = Annotated[AuditFilters, Depends(get_audit_filters)]


def _page(items: Any, next_cursor: str | None) -> Envelope[Page[AuditRecordPublic]]:
    return ok(
        Page(
            items=[AuditRecordPublic.model_validate(item) for item in items],
            next_cursor=next_cursor,
        )
    )


@audit_router.get(
    "",
    summary="List your audit records",
    response_model=Envelope[Page[AuditRecordPublic]],
    responses=error_responses(NotAuthenticated, InvalidToken, ValidationFailed),
)
async def list_audit_records(
    user: CurrentUser, audit: AuditLogDep, filters: AuditFiltersDep, page: PageDep
) -> Envelope[Page[AuditRecordPublic]]:
    """The caller's own audit records, newest first: sign-ins, a guest's upgrade, password
    changes, API keys created and revoked, and every tool call by the assistant or an MCP client
    with its arguments and outcome. Records appear a moment after what they tell of."""
    items, next_cursor = await audit.list_own(
        user, filters=filters, cursor=page.cursor, limit=page.limit
    )
    return _page(items, next_cursor)


@admin_audit_router.get(
    "",
    summary="List every audit record",
    response_model=Envelope[Page[AuditRecordPublic]],
    responses=error_responses(NotAuthenticated, InvalidToken, Forbidden, ValidationFailed),
)
async def list_all_audit_records(
    admin: AdminUser,
    audit: AuditLogDep,
    filters: AuditFiltersDep,
    page: PageDep,
    user_id: Annotated[uuid.UUID | None, Query(description="Only this user's records.")] = None,
) -> Envelope[Page[AuditRecordPublic]]:
    """Every user's audit records (or one user's), newest first."""
    items, next_cursor = await audit.list_all(
        admin, filters=filters, user_id=user_id, cursor=page.cursor, limit=page.limit
    )
    return _page(items, next_cursor)
