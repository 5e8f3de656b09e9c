"""Who is calling: `CurrentPrincipal` (user and API key), `CurrentUser`, `AdminUser`,
`CurrentCaller` (`/v1`: the user's standing as plain values), and the account services for a
route."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from parley.accounts.api_key_service import ApiKeyService
from parley.accounts.models import User
from parley.accounts.service import AccountService, Caller, Principal, identify_caller
from parley.core.dependencies import (
    SessionDep,
    cursor_codec_of,
    database_of,
    rate_limiter_of,
    settings_of,
)
from parley.core.errors import Forbidden, NotAuthenticated

# One scheme serves access tokens and API keys alike (both are `Authorization: Bearer ...`);
# its token URL makes Swagger's Authorize button sign in with the password grant.
bearer_scheme = OAuth2PasswordBearer(
    tokenUrl="/api/auth/token",
    auto_error=False,
    description=(
        "Sign in here with the password grant: **username** is your account's **email** address. "
        "Clients send an access token (from /api/auth/login or /api/auth/token) or an API key "
        "(pk_...) as `Authorization: Bearer ...`."
    ),
)


def account_service_of(request: Request, session: AsyncSession) -> AccountService:
    """Account use cases over `session`."""
    return AccountService(
        session, settings_of(request), rate_limiter_of(request), cursor_codec_of(request)
    )


async def get_account_service(request: Request, session: SessionDep) -> AccountService:
    """Account use cases over the route's session."""
    return account_service_of(request, session)


async def get_api_key_service(request: Request, session: SessionDep) -> ApiKeyService:
    """API key use cases over the route's session."""
    return ApiKeyService(session, cursor_codec_of(request))


AccountServiceDep = Annotated[AccountService, Depends(get_account_service)]
ApiKeyServiceDep = Annotated[ApiKeyService, Depends(get_api_key_service)]


async def get_current_principal(
    request: Request,
    session: SessionDep,
    token: Annotated[str | None, Depends(bearer_scheme)],
) -> Principal:
    """The authenticated caller; 401 without valid credentials."""
    if not token:
        raise NotAuthenticated()
    principal = await account_service_of(request, session).authenticate(token)
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_current_principal)]


async def get_current_caller(
    request: Request, token: Annotated[str | None, Depends(bearer_scheme)]
) -> Caller:
    """The authenticated `/v1` caller, read as plain values without the route's session; 401
    without valid credentials."""
    if not token:
        raise NotAuthenticated()
    return await identify_caller(database_of(request).engine, settings_of(request).jwt_key, token)


CurrentCaller = Annotated[Caller, Depends(get_current_caller)]


async def get_current_user(principal: CurrentPrincipal) -> User:
    """The authenticated user."""
    return principal.user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_admin_user(user: CurrentUser) -> User:
    """The authenticated user, who must be an admin (403 otherwise)."""
    if not user.is_admin:
        raise Forbidden("Admins only.")
    return user


AdminUser = Annotated[User, Depends(get_admin_user)]
