"""Who is calling: `CurrentCaller` (the one authentication, as plain values), `CurrentUser` and
`AdminUser` (the caller's ORM row in the route's session), and the account services for a route."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.ext.asyncio import AsyncSession

from parley.accounts.api_key_service import ApiKeyService
from parley.accounts.authentication import Caller, TouchThrottle, authenticate, load_user
from parley.accounts.external import ExternalIssuers
from parley.accounts.models import User
from parley.accounts.service import AccountService
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


def api_key_touches_of(request: Request) -> TouchThrottle:
    """The running app's memory of recent API key `last_used_at` writes."""
    touches: TouchThrottle = request.app.state.api_key_touches
    return touches


def issuers_of(request: Request) -> ExternalIssuers | None:
    """The running app's external issuers (None before its lifespan has started)."""
    issuers: ExternalIssuers | None = getattr(request.app.state, "issuers", None)
    return issuers


async def authenticate_request(request: Request, token: str) -> Caller:
    """The caller behind `token`, through the running app's database, key, touch throttle and
    external issuers.

    Raises:
        InvalidToken: bad, expired or revoked credentials, or a deactivated or deleted user.
    """
    return await authenticate(
        database_of(request).engine,
        settings_of(request).jwt_key,
        api_key_touches_of(request),
        token,
        request.app.state.callers,
        issuers_of(request),
    )


async def get_current_caller(
    request: Request, token: Annotated[str | None, Depends(bearer_scheme)]
) -> Caller:
    """The authenticated caller, read as plain values without the route's session; 401 without
    valid credentials."""
    if not token:
        raise NotAuthenticated()
    return await authenticate_request(request, token)


CurrentCaller = Annotated[Caller, Depends(get_current_caller)]


async def get_current_user(caller: CurrentCaller, session: SessionDep) -> User:
    """The authenticated user, as an ORM row in the route's session."""
    return await load_user(session, caller)


CurrentUser = Annotated[User, Depends(get_current_user)]


async def get_admin_user(user: CurrentUser) -> User:
    """The authenticated user, who must be an admin (403 otherwise)."""
    if not user.is_admin:
        raise Forbidden("Admins only.")
    return user


AdminUser = Annotated[User, Depends(get_admin_user)]
