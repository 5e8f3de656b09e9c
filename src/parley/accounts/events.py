"""The events the accounts publish (see docs/events.md): sign-ups, sign-ins, a guest's upgrade,
password changes and API keys created or revoked, each in the transaction of its change. The
audit log is built from them. No event carries a secret: no password, token or key.

A token refresh is no sign-in (it continues one) and tells nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from parley.events.types import EventType

REGISTERED = "parley.account.registered.v1"
SIGNED_IN = "parley.account.signed_in.v1"
UPGRADED = "parley.account.upgraded.v1"
PASSWORD_CHANGED = "parley.account.password_changed.v1"
API_KEY_CREATED = "parley.api_key.created.v1"
API_KEY_REVOKED = "parley.api_key.revoked.v1"

SignInMethod = Literal["password", "guest"]


class Registered(BaseModel):
    """`data` of `parley.account.registered.v1`."""

    user_id: uuid.UUID
    email: str = Field(description="The email the account was created with.")
    client_ip: str | None = Field(description="The client's address, as the server saw it.")


class SignedIn(BaseModel):
    """`data` of `parley.account.signed_in.v1`."""

    user_id: uuid.UUID
    method: SignInMethod = Field(
        description="`password` (a sign-in with email and password), `guest` (a new guest)."
    )
    client_ip: str | None = Field(description="The client's address, as the server saw it.")


class Upgraded(BaseModel):
    """`data` of `parley.account.upgraded.v1`."""

    user_id: uuid.UUID
    email: str = Field(description="The email the guest took.")


class PasswordChanged(BaseModel):
    """`data` of `parley.account.password_changed.v1`."""

    user_id: uuid.UUID


class ApiKeyCreated(BaseModel):
    """`data` of `parley.api_key.created.v1`: the key as the API lists it, never its secret."""

    id: uuid.UUID
    name: str
    prefix: str = Field(description="The first characters of the key, to recognise it.")
    created_at: datetime
    expires_at: datetime | None


class ApiKeyRevoked(ApiKeyCreated):
    """`data` of `parley.api_key.revoked.v1`: the key as it was, and when it was revoked."""

    revoked_at: datetime


ACCOUNT_EVENTS: tuple[EventType, ...] = (
    EventType(
        REGISTERED,
        Registered,
        "An account was created with an email and password (its sign-up, which also signs it "
        "in); `data` says with which email and from where.",
    ),
    EventType(
        SIGNED_IN,
        SignedIn,
        "Someone signed in (email and password, or as a new guest); `data` says how and from "
        "where.",
    ),
    EventType(UPGRADED, Upgraded, "A guest became a full account with an email and password."),
    EventType(PASSWORD_CHANGED, PasswordChanged, "A user changed their password."),
    EventType(
        API_KEY_CREATED, ApiKeyCreated, "An API key was created; `data` is the key, no secret."
    ),
    EventType(
        API_KEY_REVOKED,
        ApiKeyRevoked,
        "An API key was revoked; `data` is the key, no secret, and when.",
    ),
)
