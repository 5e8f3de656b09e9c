"""OAuth tables: the clients MCP applications registered (RFC 7591), the grants users gave them
(a "connection", revoked as a whole), the authorization codes of the sign-in page and the refresh
tokens of each grant. Codes and refresh tokens are kept as SHA-256 hashes only, never in clear."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from parley.core.db import Base, IdTimestampMixin


class OAuthClient(IdTimestampMixin, Base):
    """A registered client. `client_id` is what the client sends; a confidential client's secret
    is kept as a hash (`secret_hash`), a public client has none."""

    __tablename__ = "oauth_clients"

    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    client_name: Mapped[str | None] = mapped_column(String(100))
    redirect_uris: Mapped[list[str]] = mapped_column(JSON)
    grant_types: Mapped[list[str]] = mapped_column(JSON)
    response_types: Mapped[list[str]] = mapped_column(JSON)
    token_endpoint_auth_method: Mapped[str] = mapped_column(String(32))
    secret_hash: Mapped[str | None] = mapped_column(String(64))
    scope: Mapped[str | None] = mapped_column(String(1000))


class OAuthGrant(IdTimestampMixin, Base):
    """What a user allowed a client: made by the first exchange of an authorization code, kept
    alive by its refresh tokens, and ended by `revoked_at` (every token of it stops at once)."""

    __tablename__ = "oauth_grants"
    __table_args__ = (Index("ix_oauth_grants_user_id_created_at", "user_id", "created_at"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    client_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("oauth_clients.id", ondelete="CASCADE"), index=True
    )
    resource: Mapped[str] = mapped_column(String(2048))
    scope: Mapped[str | None] = mapped_column(String(1000))
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class OAuthCode(IdTimestampMixin, Base):
    """An authorization code, bound to its client, redirect URI, PKCE challenge and resource.

    Single use: `used_at` is set by its exchange, which also records the grant it made, so that a
    second exchange of the same code can revoke that grant (RFC 6749 section 4.1.2).
    """

    __tablename__ = "oauth_codes"

    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    client_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("oauth_clients.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    redirect_uri: Mapped[str] = mapped_column(String(2048))
    code_challenge: Mapped[str] = mapped_column(String(128))
    resource: Mapped[str] = mapped_column(String(2048))
    scope: Mapped[str | None] = mapped_column(String(1000))
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    grant_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("oauth_grants.id", ondelete="CASCADE"), index=True
    )


class OAuthRefreshToken(IdTimestampMixin, Base):
    """One refresh token of a grant. Each use spends it (`spent_at`) and issues the next; a spent
    one presented again revokes the whole grant."""

    __tablename__ = "oauth_refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    grant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("oauth_grants.id", ondelete="CASCADE"), index=True
    )
    expires_at: Mapped[datetime]
    spent_at: Mapped[datetime | None]
