"""Account tables: users, refresh tokens (one row per issued token, grouped in families), API
keys (stored as a lookup prefix and a hash, never in clear) and external identities (a user of an
external issuer, by `(iss, sub)`)."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from parley.core.db import Base, IdTimestampMixin


class User(IdTimestampMixin, Base):
    """A person (or a guest who may become one). Emails are stored lower-cased."""

    __tablename__ = "users"
    __table_args__ = (Index("ix_users_created_at_id", "created_at", "id"),)

    email: Mapped[str | None] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(255))
    display_name: Mapped[str] = mapped_column(String(100))
    is_guest: Mapped[bool] = mapped_column(default=False)
    is_admin: Mapped[bool] = mapped_column(default=False)
    is_active: Mapped[bool] = mapped_column(default=True)
    monthly_budget_usd: Mapped[Decimal | None] = mapped_column(Numeric(14, 6))


class RefreshToken(IdTimestampMixin, Base):
    """One issued refresh token; its `id` is the JWT's `jti`.

    A login starts a family; each refresh spends the presented token and issues the next in the
    same family. Presenting a spent token again revokes the whole family.
    """

    __tablename__ = "refresh_tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    family_id: Mapped[uuid.UUID] = mapped_column(index=True)
    expires_at: Mapped[datetime]
    spent_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class ApiKey(IdTimestampMixin, Base):
    """A long-lived credential for scripts and MCP clients; revoked keys are kept for the record."""

    __tablename__ = "api_keys"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class ExternalIdentity(IdTimestampMixin, Base):
    """The Parley user behind an external issuer's subject: a bearer JWT with this `iss` and
    `sub` acts as `user_id`. Made on the first token; `email` is what that token claimed (kept
    even when the user's own email was left empty because a local account already had it)."""

    __tablename__ = "external_identities"
    __table_args__ = (UniqueConstraint("issuer", "subject"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    issuer: Mapped[str] = mapped_column(String(512))
    subject: Mapped[str] = mapped_column(String(255))
    email: Mapped[str | None] = mapped_column(String(320))
