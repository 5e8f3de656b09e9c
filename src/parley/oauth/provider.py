"""Parley's storage and policy behind the MCP SDK's OAuth handlers: `ParleyOAuthProvider` is the
SDK's `OAuthAuthorizationServerProvider` over Parley's database, so the SDK's registration and
token handlers (`mcp.server.auth.handlers`) speak the protocol and this module decides.

- Registration (`register_client`) bounds what a client may register (redirect URIs per
  `parley.oauth.redirects`, names, grant types, the two token-endpoint methods Parley supports)
  and keeps a confidential client's secret as a hash only.
- Codes (`issue_code`, from the consent page) are single use and short-lived. A code presented a
  second time fails, and revokes the grant its first exchange made (RFC 6749 section 4.1.2).
- Refresh tokens rotate: each use spends the token and issues the next in the same grant; a
  spent one presented again revokes the whole grant (OAuth 2.1 section 4.3.1).
- `user_for_access_token` is what `/mcp` asks on every request: the token's signature, audience
  and expiry, and that its grant is live and its user active.

Each method is one use case on a session of its own, committed at its end.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta

from mcp.server.auth.provider import (
    AccessToken,
    AuthorizationCode,
    AuthorizationParams,
    OAuthAuthorizationServerProvider,
    RefreshToken,
    RegistrationError,
    TokenError,
)
from mcp.shared.auth import OAuthClientInformationFull, OAuthToken
from pydantic import AnyUrl
from sqlalchemy.ext.asyncio import AsyncSession

from parley.accounts.authentication import TouchThrottle
from parley.accounts.models import User
from parley.core.db import Database, utcnow
from parley.core.errors import InvalidToken
from parley.core.security import hash_secret, secrets_match
from parley.oauth import repository
from parley.oauth.models import OAuthClient, OAuthCode, OAuthGrant, OAuthRefreshToken
from parley.oauth.redirects import RedirectUriRefused, check_redirect_uris
from parley.oauth.tokens import (
    CLIENT_SECRET_PREFIX,
    CODE_PREFIX,
    MAX_SCOPE_CHARS,
    MAX_SECRET_CHARS,
    REFRESH_TOKEN_PREFIX,
    decode_access_token,
    encode_access_token,
    new_secret,
)
from parley.settings import Settings

CODE_TTL = timedelta(minutes=5)
MAX_CLIENT_NAME_CHARS = 100
SUPPORTED_GRANT_TYPES = frozenset({"authorization_code", "refresh_token"})
SUPPORTED_AUTH_METHODS = ("none", "client_secret_post")


def _refuse(description: str) -> RegistrationError:
    return RegistrationError(error="invalid_client_metadata", error_description=description)


class ParleyOAuthProvider(
    OAuthAuthorizationServerProvider[AuthorizationCode, RefreshToken, AccessToken]
):
    """The SDK's provider interface over Parley's database (see the module docstring).

    Args:
        settings: the app's settings (the JWT key, token lifetimes).
        database: how to reach the running app's database (it exists once the lifespan runs).
    """

    def __init__(self, settings: Settings, database: Callable[[], Database]) -> None:
        self.settings = settings
        self._database = database
        self.touches = TouchThrottle()

    def _session(self) -> AsyncSession:
        return self._database().sessionmaker()

    # -- clients ----------------------------------------------------------------------------

    @staticmethod
    def information(client: OAuthClient) -> OAuthClientInformationFull:
        # The secret is not kept: `ClientSecretAuthenticator` checks it against the hash.
        return OAuthClientInformationFull(
            client_id=client.client_id,
            client_name=client.client_name,
            redirect_uris=[AnyUrl(uri) for uri in client.redirect_uris],
            grant_types=list(client.grant_types),
            response_types=list(client.response_types),
            token_endpoint_auth_method=client.token_endpoint_auth_method,
            scope=client.scope,
            client_id_issued_at=int(client.created_at.timestamp()),
        )

    async def get_client_record(self, client_id: str) -> OAuthClient | None:
        """The registered client's row, or None (for an id no client could have, too)."""
        if not client_id or len(client_id) > 64:
            return None
        async with self._session() as session:
            return await repository.get_client(session, client_id)

    async def get_client(self, client_id: str) -> OAuthClientInformationFull | None:
        client = await self.get_client_record(client_id)
        return None if client is None else self.information(client)

    async def client_secret_matches(self, client: OAuthClient, secret: str | None) -> bool:
        """Whether `secret` is the confidential client's secret (constant time)."""
        if client.secret_hash is None or not secret or len(secret) > MAX_SECRET_CHARS:
            return False
        return secrets_match(secret, client.secret_hash)

    async def register_client(self, client_info: OAuthClientInformationFull) -> None:
        """Store a client the SDK's registration handler has parsed, within Parley's bounds.

        The handler answers the secret it made (in `client_info`) to the client; only its hash
        is stored, so it is replaced by a prefixed one of Parley's own here.

        Raises:
            RegistrationError: the metadata is outside what Parley accepts.
        """
        uris = [str(uri) for uri in client_info.redirect_uris or []]
        try:
            check_redirect_uris(uris)
        except RedirectUriRefused as exc:
            raise RegistrationError(
                error="invalid_redirect_uri", error_description=str(exc)
            ) from exc
        name = client_info.client_name
        if name is not None and (
            len(name) > MAX_CLIENT_NAME_CHARS or not name.isprintable() or not name.strip()
        ):
            raise _refuse(f"client_name must be 1 to {MAX_CLIENT_NAME_CHARS} printable characters.")
        if not set(client_info.grant_types) <= SUPPORTED_GRANT_TYPES:
            raise _refuse("grant_types may be only authorization_code and refresh_token.")
        if set(client_info.response_types) != {"code"}:
            raise _refuse("response_types must be ['code'].")
        method = client_info.token_endpoint_auth_method or "client_secret_post"
        if method not in SUPPORTED_AUTH_METHODS:
            raise _refuse(
                f"token_endpoint_auth_method must be one of {', '.join(SUPPORTED_AUTH_METHODS)}."
            )
        if client_info.scope is not None and len(client_info.scope) > MAX_SCOPE_CHARS:
            raise _refuse(f"scope must be at most {MAX_SCOPE_CHARS} characters.")
        secret_hash = None
        if method != "none":
            client_info.client_secret = new_secret(CLIENT_SECRET_PREFIX)
            secret_hash = hash_secret(client_info.client_secret)
        async with self._session() as session:
            session.add(
                OAuthClient(
                    client_id=client_info.client_id,
                    client_name=name.strip() if name else None,
                    redirect_uris=uris,
                    grant_types=sorted(set(client_info.grant_types)),
                    response_types=["code"],
                    token_endpoint_auth_method=method,
                    secret_hash=secret_hash,
                    scope=client_info.scope,
                )
            )
            await session.commit()

    # -- authorization codes ----------------------------------------------------------------

    async def authorize(
        self, client: OAuthClientInformationFull, params: AuthorizationParams
    ) -> str:
        """Not used: Parley's own consent page (`parley.oauth.consent`) handles `/authorize`,
        since it must check loopback redirect URIs by RFC 8252's rule and sign the user in."""
        raise NotImplementedError

    async def issue_code(
        self,
        client: OAuthClient,
        *,
        user_id: uuid.UUID,
        redirect_uri: str,
        code_challenge: str,
        resource: str,
        scope: str | None,
    ) -> str:
        """A new authorization code for what the user allowed; only its hash is stored."""
        code = new_secret(CODE_PREFIX)
        async with self._session() as session:
            session.add(
                OAuthCode(
                    code_hash=hash_secret(code),
                    client_id=client.id,
                    user_id=user_id,
                    redirect_uri=redirect_uri,
                    code_challenge=code_challenge,
                    resource=resource,
                    scope=scope,
                    expires_at=utcnow() + CODE_TTL,
                )
            )
            await session.commit()
        return code

    async def load_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: str
    ) -> AuthorizationCode | None:
        """The unused code, or None. A used one revokes the grant its exchange made."""
        if len(authorization_code) > MAX_SECRET_CHARS:
            return None
        async with self._session() as session:
            row = await repository.get_code(session, hash_secret(authorization_code))
            if row is None:
                return None
            owner = await session.get(OAuthClient, row.client_id)
            if owner is None or owner.client_id != client.client_id:
                return None
            if row.used_at is not None:
                if row.grant_id is not None:
                    await repository.revoke_grant(session, row.grant_id, utcnow())
                    await session.commit()
                return None
            return AuthorizationCode(
                code=authorization_code,
                scopes=row.scope.split() if row.scope else [],
                expires_at=row.expires_at.timestamp(),
                client_id=client.client_id,
                code_challenge=row.code_challenge,
                redirect_uri=AnyUrl(row.redirect_uri),
                redirect_uri_provided_explicitly=True,
                resource=row.resource,
                subject=str(row.user_id),
            )

    async def exchange_authorization_code(
        self, client: OAuthClientInformationFull, authorization_code: AuthorizationCode
    ) -> OAuthToken:
        """Spend the code (once: a racing second exchange fails) and open its grant."""
        now = utcnow()
        async with self._session() as session:
            row = await repository.get_code(session, hash_secret(authorization_code.code))
            client_row = await repository.get_client(session, client.client_id)
            if (
                row is None
                or client_row is None
                or not await repository.spend_code(session, row.id, now)
            ):
                raise TokenError(error="invalid_grant", error_description="The code is not valid.")
            user = await session.get(User, row.user_id)
            if user is None or not user.is_active:
                await session.commit()  # the code stays spent
                raise TokenError(error="invalid_grant", error_description="The code is not valid.")
            grant = OAuthGrant(
                user_id=row.user_id,
                client_id=client_row.id,
                resource=row.resource,
                scope=row.scope,
                last_used_at=now,
            )
            session.add(grant)
            await session.flush()
            row.grant_id = grant.id
            tokens = self._issue(session, grant, client.client_id, now)
            await session.commit()
            return tokens

    # -- tokens -----------------------------------------------------------------------------

    def _issue(
        self, session: AsyncSession, grant: OAuthGrant, client_id: str, now: datetime
    ) -> OAuthToken:
        """A new access and refresh token of `grant` (the refresh token is added to `session`)."""
        ttl = self.settings.access_token_ttl_seconds
        access, _ = encode_access_token(
            self.settings.jwt_key,
            user_id=grant.user_id,
            grant_id=grant.id,
            client_id=client_id,
            resource=grant.resource,
            scope=grant.scope,
            ttl_seconds=ttl,
        )
        refresh = new_secret(REFRESH_TOKEN_PREFIX)
        session.add(
            OAuthRefreshToken(
                token_hash=hash_secret(refresh),
                grant_id=grant.id,
                expires_at=now + timedelta(seconds=self.settings.refresh_token_ttl_seconds),
            )
        )
        return OAuthToken(
            access_token=access, expires_in=ttl, refresh_token=refresh, scope=grant.scope
        )

    async def load_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: str
    ) -> RefreshToken | None:
        """The live refresh token, or None. A spent one revokes its whole grant."""
        if len(refresh_token) > MAX_SECRET_CHARS:
            return None
        async with self._session() as session:
            row = await repository.get_refresh_token(session, hash_secret(refresh_token))
            if row is None:
                return None
            if row.spent_at is not None:
                await repository.revoke_grant(session, row.grant_id, utcnow())
                await session.commit()
                return None
            grant = await repository.get_grant(session, row.grant_id)
            if grant is None or grant.revoked_at is not None:
                return None
            owner = await session.get(OAuthClient, grant.client_id)
            if owner is None or owner.client_id != client.client_id:
                return None
            return RefreshToken(
                token=refresh_token,
                client_id=client.client_id,
                scopes=grant.scope.split() if grant.scope else [],
                expires_at=int(row.expires_at.timestamp()),
                resource=grant.resource,
                subject=str(grant.user_id),
            )

    async def exchange_refresh_token(
        self, client: OAuthClientInformationFull, refresh_token: RefreshToken, scopes: list[str]
    ) -> OAuthToken:
        """Spend the refresh token and issue the next pair of its grant. Losing a race to spend
        it counts as a reuse: the grant is revoked."""
        now = utcnow()
        async with self._session() as session:
            row = await repository.get_refresh_token(session, hash_secret(refresh_token.token))
            if row is None:
                raise TokenError(error="invalid_grant", error_description="The token is not valid.")
            if not await repository.spend_refresh_token(session, row.id, now):
                await repository.revoke_grant(session, row.grant_id, now)
                await session.commit()
                raise TokenError(error="invalid_grant", error_description="The token was spent.")
            grant = await repository.get_grant(session, row.grant_id)
            user = None if grant is None else await session.get(User, grant.user_id)
            if grant is None or grant.revoked_at is not None or user is None or not user.is_active:
                await session.commit()
                raise TokenError(error="invalid_grant", error_description="The grant has ended.")
            grant.last_used_at = now
            tokens = self._issue(session, grant, client.client_id, now)
            await session.commit()
            return tokens

    async def load_access_token(self, token: str) -> AccessToken | None:
        """Not used: `/mcp` checks its tokens with `user_for_access_token`, which knows the
        resource (the request's own URL) a token must be bound to."""
        return None

    async def revoke_token(self, token: AccessToken | RefreshToken) -> None:
        """Revoke the grant a refresh token belongs to (access tokens end with their grant)."""
        if not isinstance(token, RefreshToken):
            return
        async with self._session() as session:
            row = await repository.get_refresh_token(session, hash_secret(token.token))
            if row is not None:
                await repository.revoke_grant(session, row.grant_id, utcnow())
                await session.commit()

    # -- the resource: /mcp ------------------------------------------------------------------

    async def user_for_access_token(self, token: str, *, resource: str) -> User:
        """The user behind an MCP access token presented to `resource`.

        Raises:
            InvalidToken: the token is bad, expired, for another resource, or its grant was
                revoked, or its user is deactivated.
        """
        claims = decode_access_token(self.settings.jwt_key, token, resource=resource)
        async with self._session() as session:
            found = await repository.live_grant_holder(session, claims.grant_id, claims.user_id)
            if found is None:
                raise InvalidToken("The token's connection has been revoked.")
            grant, user = found
            if not user.is_active:
                raise InvalidToken("This account is deactivated.")
            now = utcnow()
            if self.touches.claim(grant.id, grant.last_used_at, now):
                try:
                    await repository.touch_grant(session, grant.id, now)
                    await session.commit()
                except BaseException:
                    self.touches.release(grant.id)
                    raise
            return user
