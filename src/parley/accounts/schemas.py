"""Request and response models of the accounts API (CONTRACT.md section 3)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
)

from parley.core.validation import RequestModel, StorableText, UtcDatetime

PASSWORD_MIN = 8
PASSWORD_MAX = 128


def _lower(value: str) -> str:
    return value.lower()


Email = Annotated[EmailStr, AfterValidator(_lower)]
Password = Annotated[str, Field(min_length=PASSWORD_MIN, max_length=PASSWORD_MAX)]
DisplayName = Annotated[
    StorableText, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)
]


class RegisterRequest(RequestModel):
    email: Email
    password: Password
    display_name: DisplayName | None = None


class LoginRequest(RequestModel):
    email: Email
    # Not held to today's policy: an older password may be shorter; the cap only bounds the work.
    password: str = Field(min_length=1, max_length=1024)


class UpgradeRequest(RequestModel):
    email: Email
    password: Password


class RefreshRequest(RequestModel):
    refresh_token: str = Field(min_length=1, max_length=4096)


class UserUpdate(RequestModel):
    display_name: DisplayName | None = None


class PasswordChange(RequestModel):
    current_password: str = Field(min_length=1, max_length=1024)
    new_password: Password


class ApiKeyCreate(RequestModel):
    name: DisplayName
    expires_at: UtcDatetime | None = Field(
        default=None, description="When the key stops working (RFC 3339, with a zone)."
    )


class AdminUserUpdate(RequestModel):
    is_active: bool | None = None
    is_admin: bool | None = None
    monthly_budget_usd: Decimal | None = Field(
        default=None,
        ge=0,
        max_digits=14,
        decimal_places=6,
        description="Monthly budget in USD; null means unlimited (the default budget applies).",
    )


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the access token expires.")


class UserPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    email: str | None
    display_name: str
    is_guest: bool
    is_admin: bool
    is_active: bool
    created_at: datetime


class AdminUserPublic(UserPublic):
    monthly_budget_usd: float | None
    updated_at: datetime


class AuthResult(BaseModel):
    user: UserPublic
    tokens: TokenPair


class TokensResult(BaseModel):
    tokens: TokenPair


class PasswordGrantForm(BaseModel):
    """RFC 6749 section 4.3.2: the form of a resource-owner password grant, as Swagger's
    Authorize dialog sends it. The field names are the RFC's: `username` is the email."""

    grant_type: Annotated[
        str | None,
        Field(pattern="^password$", description="`password` (may be left out)."),
    ] = None
    username: Annotated[
        str,
        Field(
            description="The account's **email** address (RFC 6749 names this field `username`)."
        ),
    ]
    password: Annotated[
        str, Field(description="The account's password.", json_schema_extra={"format": "password"})
    ]
    scope: Annotated[str, Field(description="Ignored: Parley's tokens have no scopes.")] = ""
    client_id: Annotated[str | None, Field(description="Ignored.")] = None
    client_secret: Annotated[
        str | None, Field(description="Ignored.", json_schema_extra={"format": "password"})
    ] = None


class OAuthTokenResponse(BaseModel):
    """RFC 6749 section 5.1 (no envelope)."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int
    refresh_token: str


class ApiKeyPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    prefix: str = Field(description="The first characters of the key, to recognise it.")
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    key: str = Field(description="The secret. Shown this once: store it now.")
