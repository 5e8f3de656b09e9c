"""Accounts over HTTP (CONTRACT.md section 3).

- `POST /api/auth/register`, `POST /api/auth/login`, `POST /api/auth/token` (OAuth 2.0 password
  grant, no envelope), `POST /api/auth/guest`, `POST /api/auth/upgrade`, `POST /api/auth/refresh`,
  `POST /api/auth/logout`
- `GET/PATCH /api/users/me`, `POST /api/users/me/password`
- `GET/POST /api/users/me/api-keys`, `DELETE /api/users/me/api-keys/{key_id}`

Every answer that carries tokens or a key's secret is `Cache-Control: no-store`, `Pragma: no-cache`
(RFC 6749 section 5.1).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Form, Response, status

from parley.accounts.dependencies import (
    AccountServiceDep,
    ApiKeyServiceDep,
    CurrentUser,
)
from parley.accounts.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyPublic,
    AuthResult,
    LoginRequest,
    OAuthTokenResponse,
    PasswordChange,
    PasswordGrantForm,
    RefreshRequest,
    RegisterRequest,
    TokensResult,
    UpgradeRequest,
    UserPublic,
    UserUpdate,
)
from parley.core.dependencies import ClientIpDep, NoStore, PageDep
from parley.core.errors import (
    Conflict,
    Forbidden,
    InvalidCredentials,
    InvalidToken,
    NotAuthenticated,
    NotFound,
    RateLimited,
)
from parley.core.responses import Envelope, Page, error_responses, ok

auth_router = APIRouter(prefix="/api/auth", tags=["auth"])
users_router = APIRouter(prefix="/api/users", tags=["users"])


@auth_router.post(
    "/register",
    dependencies=[NoStore],
    status_code=status.HTTP_201_CREATED,
    summary="Create an account",
    responses=error_responses(Conflict, RateLimited),
)
async def register(
    body: RegisterRequest, accounts: AccountServiceDep, client_ip: ClientIpDep
) -> Envelope[AuthResult]:
    """Create an account with email and password and sign it in."""
    user, tokens = await accounts.register(
        email=body.email,
        password=body.password,
        display_name=body.display_name,
        client_ip=client_ip,
    )
    return ok(AuthResult(user=UserPublic.model_validate(user), tokens=tokens))


@auth_router.post(
    "/login",
    dependencies=[NoStore],
    summary="Sign in",
    responses=error_responses(InvalidCredentials, Forbidden, RateLimited),
)
async def login(
    body: LoginRequest, accounts: AccountServiceDep, client_ip: ClientIpDep
) -> Envelope[AuthResult]:
    """Sign in with email and password; answers a new access and refresh token."""
    user, tokens = await accounts.login(
        email=body.email, password=body.password, client_ip=client_ip
    )
    return ok(AuthResult(user=UserPublic.model_validate(user), tokens=tokens))


@auth_router.post(
    "/token",
    dependencies=[NoStore],
    summary="OAuth 2.0 password grant",
    responses=error_responses(InvalidCredentials, Forbidden, RateLimited),
)
async def token(
    form: Annotated[PasswordGrantForm, Form()],
    accounts: AccountServiceDep,
    client_ip: ClientIpDep,
) -> OAuthTokenResponse:
    """RFC 6749 resource-owner password grant, as Swagger's Authorize button uses it:
    `username` is the account's **email**. The answer is a plain RFC 6749 token response,
    without the envelope."""
    email = form.username.strip().lower()
    if "\x00" in email or len(email) > 320:
        raise InvalidCredentials()  # no such account can exist; the database is not asked
    _, tokens = await accounts.login(email=email, password=form.password, client_ip=client_ip)
    return OAuthTokenResponse(
        access_token=tokens.access_token,
        expires_in=tokens.expires_in,
        refresh_token=tokens.refresh_token,
    )


@auth_router.post(
    "/guest",
    dependencies=[NoStore],
    status_code=status.HTTP_201_CREATED,
    summary="Continue as a guest",
    responses=error_responses(RateLimited),
)
async def create_guest(accounts: AccountServiceDep, client_ip: ClientIpDep) -> Envelope[AuthResult]:
    """Create a guest account (no email or password), signed in. Upgrade it later to keep it."""
    user, tokens = await accounts.create_guest(client_ip=client_ip)
    return ok(AuthResult(user=UserPublic.model_validate(user), tokens=tokens))


@auth_router.post(
    "/upgrade",
    dependencies=[NoStore],
    summary="Upgrade a guest to a full account",
    responses=error_responses(NotAuthenticated, InvalidToken, Conflict),
)
async def upgrade(
    body: UpgradeRequest, user: CurrentUser, accounts: AccountServiceDep
) -> Envelope[AuthResult]:
    """Give the calling guest an email and password. The user id and all data stay the same.
    Every earlier refresh token of the guest is revoked; the tokens in this answer work."""
    upgraded, tokens = await accounts.upgrade(user, email=body.email, password=body.password)
    return ok(AuthResult(user=UserPublic.model_validate(upgraded), tokens=tokens))


@auth_router.post(
    "/refresh",
    dependencies=[NoStore],
    summary="Rotate the refresh token",
    responses=error_responses(InvalidToken),
)
async def refresh(body: RefreshRequest, accounts: AccountServiceDep) -> Envelope[TokensResult]:
    """Spend a refresh token for a new access and refresh token. A spent token presented again
    revokes its whole family (401)."""
    tokens = await accounts.refresh(refresh_token=body.refresh_token)
    return ok(TokensResult(tokens=tokens))


@auth_router.post(
    "/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Sign out",
    responses=error_responses(InvalidToken),
)
async def logout(body: RefreshRequest, accounts: AccountServiceDep) -> Response:
    """Revoke the refresh token's family."""
    await accounts.logout(refresh_token=body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@users_router.get(
    "/me", summary="The current user", responses=error_responses(NotAuthenticated, InvalidToken)
)
async def get_me(user: CurrentUser) -> Envelope[UserPublic]:
    """The signed-in user."""
    return ok(UserPublic.model_validate(user))


@users_router.patch(
    "/me",
    summary="Update the current user",
    responses=error_responses(NotAuthenticated, InvalidToken),
)
async def update_me(
    body: UserUpdate, user: CurrentUser, accounts: AccountServiceDep
) -> Envelope[UserPublic]:
    """Change the display name."""
    updated = await accounts.update_me(user, display_name=body.display_name)
    return ok(UserPublic.model_validate(updated))


@users_router.post(
    "/me/password",
    summary="Change the password",
    responses=error_responses(NotAuthenticated, InvalidToken, Conflict, RateLimited),
)
async def change_password(
    body: PasswordChange, user: CurrentUser, accounts: AccountServiceDep
) -> Envelope[UserPublic]:
    """Set a new password, given the current one. Every refresh token is revoked: other sessions
    end when their access token expires."""
    updated = await accounts.change_password(
        user, current_password=body.current_password, new_password=body.new_password
    )
    return ok(UserPublic.model_validate(updated))


@users_router.get(
    "/me/api-keys",
    summary="List API keys",
    responses=error_responses(NotAuthenticated, InvalidToken),
)
async def list_api_keys(
    user: CurrentUser, keys: ApiKeyServiceDep, page: PageDep
) -> Envelope[Page[ApiKeyPublic]]:
    """The caller's live keys, newest first: prefix, name, created, last used, expiry."""
    items, next_cursor = await keys.list(user, cursor=page.cursor, limit=page.limit)
    return ok(
        Page(items=[ApiKeyPublic.model_validate(key) for key in items], next_cursor=next_cursor)
    )


@users_router.post(
    "/me/api-keys",
    dependencies=[NoStore],
    status_code=status.HTTP_201_CREATED,
    summary="Create an API key",
    responses=error_responses(NotAuthenticated, InvalidToken, Conflict),
)
async def create_api_key(
    body: ApiKeyCreate, user: CurrentUser, keys: ApiKeyServiceDep
) -> Envelope[ApiKeyCreated]:
    """A new key. Its secret is in this answer only: store it now."""
    key, secret = await keys.create(user, name=body.name, expires_at=body.expires_at)
    public = ApiKeyPublic.model_validate(key)
    return ok(ApiKeyCreated(**public.model_dump(), key=secret))


@users_router.delete(
    "/me/api-keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke an API key",
    responses=error_responses(NotAuthenticated, InvalidToken, NotFound),
)
async def revoke_api_key(key_id: uuid.UUID, user: CurrentUser, keys: ApiKeyServiceDep) -> Response:
    """Revoke a key; it stops working at once."""
    await keys.revoke(user, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
