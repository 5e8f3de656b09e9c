"""User management for admins (CONTRACT.md section 3): `GET /api/admin/users`,
`PATCH /api/admin/users/{user_id}`. Everyone else gets 403."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from parley.accounts.dependencies import AccountServiceDep, AdminUser
from parley.accounts.schemas import AdminUserPublic, AdminUserUpdate
from parley.core.dependencies import PageDep
from parley.core.errors import Conflict, Forbidden, InvalidToken, NotAuthenticated, NotFound
from parley.core.responses import Envelope, Page, error_responses, ok
from parley.core.validation import StorableText

admin_users_router = APIRouter(prefix="/api/admin/users", tags=["admin"])


@admin_users_router.get(
    "",
    summary="List users",
    responses=error_responses(NotAuthenticated, InvalidToken, Forbidden),
)
async def list_users(
    admin: AdminUser,
    accounts: AccountServiceDep,
    page: PageDep,
    q: Annotated[
        StorableText | None, Query(max_length=200, description="Text in email or name.")
    ] = None,
) -> Envelope[Page[AdminUserPublic]]:
    """Every user, newest first."""
    users, next_cursor = await accounts.list_users(q=q, cursor=page.cursor, limit=page.limit)
    return ok(
        Page(items=[AdminUserPublic.model_validate(u) for u in users], next_cursor=next_cursor)
    )


@admin_users_router.patch(
    "/{user_id}",
    summary="Update a user",
    responses=error_responses(NotAuthenticated, InvalidToken, Forbidden, NotFound, Conflict),
)
async def update_user(
    user_id: uuid.UUID, body: AdminUserUpdate, admin: AdminUser, accounts: AccountServiceDep
) -> Envelope[AdminUserPublic]:
    """Activate or deactivate (takes effect at once), promote or demote, set the monthly budget
    (null: unlimited)."""
    user = await accounts.admin_update_user(admin, user_id, body.model_dump(exclude_unset=True))
    return ok(AdminUserPublic.model_validate(user))
