"""Who is calling: `CurrentPrincipal` (user and API key), `CurrentUser`, `AdminUser`, and the
account services for a route."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from parley.accounts.api_key_service import ApiKeyService
from parley.accounts.models import User
from parley.accounts.service import AccountService, Principal
from parley.core.dependencies import CursorCodecDep, RateLimiterDep, SessionDep, SettingsDep
from parley.core.errors import Forbidden, NotAuthenticated

# One scheme serves access tokens and API keys alike (both are `Authorization: Bearer ...`);
# its token URL makes Swagger's Authorize button sign in with the password grant.
bearer_scheme = OAuth2PasswordBearer(
    tokenUrl="/api/auth/token",
    auto_error=False,
    description="An access token (from /api/auth/login or /api/auth/token) or an API key (pk_...).",
)


async def get_account_service(
    session: SessionDep, settings: SettingsDep, limiter: RateLimiterDep, codec: CursorCodecDep
) -> AccountService:
    """Account use cases over the route's session."""
    return AccountService(session, settings, limiter, codec)


async def get_api_key_service(session: SessionDep, codec: CursorCodecDep) -> ApiKeyService:
    """API key use cases over the route's session."""
    return ApiKeyService(session, codec)


AccountServiceDep = Annotated[AccountService, Depends(get_account_service)]
ApiKeyServiceDep = Annotated[ApiKeyService, Depends(get_api_key_service)]


async def get_current_principal(
    request: Request,
    accounts: AccountServiceDep,
    token: Annotated[str | None, Depends(bearer_scheme)],
) -> Principal:
    """The authenticated caller; 401 without valid credentials."""
    if not token:
        raise NotAuthenticated()
    principal = await accounts.authenticate(token)
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_current_principal)]


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
