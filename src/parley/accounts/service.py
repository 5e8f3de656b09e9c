"""Account use cases: sign-up, sign-in, guests and their upgrade, token rotation, authentication of
every request, the current user, and admin user management. API keys live in `api_keys.py`.

Each public method is one use case and commits once at its end. Errors are Parley errors; nothing
here knows about HTTP.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from parley.accounts import repository
from parley.accounts.models import User
from parley.accounts.schemas import TokenPair
from parley.core.db import new_id, utcnow
from parley.core.errors import (
    Conflict,
    Forbidden,
    InvalidCredentials,
    InvalidToken,
    NotFound,
    ValidationFailed,
)
from parley.core.pagination import CursorCodec
from parley.core.ratelimit import RateLimiter
from parley.core.security import (
    api_key_lookup_prefix,
    decode_token,
    encode_token,
    hash_password,
    looks_like_api_key,
    secrets_match,
    verify_password,
)
from parley.core.telemetry import traced
from parley.settings import Settings

GUEST_DISPLAY_NAME = "Guest"
MAX_TOKEN_CHARS = 4096
# `last_used_at` is written at most this often per key, so a busy key does not write on every call.
API_KEY_TOUCH_INTERVAL = timedelta(seconds=60)
# The keys whose `last_used_at` this worker last wrote, and when (bounded: cleared when full).
_RECENT_TOUCHES: dict[uuid.UUID, datetime] = {}
_RECENT_TOUCHES_MAX = 10_000


def _claim_touch(key_id: uuid.UUID, last_used_at: datetime | None, now: datetime) -> bool:
    """Whether this request should write the key's `last_used_at`.

    Every request in flight when the interval lapses read the same stale value; had each written
    it, a busy key would have sent a burst of identical updates to the database (on SQLite, each
    queued for the one write lock while holding a pooled connection). The first request of the
    worker claims the write and the worker's others skip it: a key is written at most once an
    interval per worker.
    """
    if last_used_at is not None and now - last_used_at < API_KEY_TOUCH_INTERVAL:
        return False
    claimed = _RECENT_TOUCHES.get(key_id)
    if claimed is not None and now - claimed < API_KEY_TOUCH_INTERVAL:
        return False
    if len(_RECENT_TOUCHES) >= _RECENT_TOUCHES_MAX:
        _RECENT_TOUCHES.clear()
    _RECENT_TOUCHES[key_id] = now
    return True


class _KeyFields(Protocol):
    key_hash: str
    expires_at: datetime | None


class _StandingFields(Protocol):
    is_active: bool


_K = TypeVar("_K", bound=_KeyFields)


def _verified_key(token: str, key: _K | None, now: datetime) -> _K:
    """The key found for `token`'s prefix, if `token` is that key and it has not expired.

    Raises:
        InvalidToken: no such key, another secret, or expired.
    """
    if key is None or not secrets_match(token, key.key_hash):
        raise InvalidToken("The API key is invalid or has been revoked.")
    if key.expires_at is not None and key.expires_at <= now:
        raise InvalidToken("The API key has expired.")
    return key


def _check_token_text(token: str) -> None:
    """Raises InvalidToken for text no Parley token has: too long, or other than printable ASCII
    (a NUL would reach the database otherwise, and PostgreSQL refuses it in text: a 500)."""
    if len(token) > MAX_TOKEN_CHARS or not (token.isascii() and token.isprintable()):
        raise InvalidToken()


def _check_standing(user: _StandingFields | None) -> None:
    """Raises InvalidToken for a deleted or deactivated user."""
    if user is None:
        raise InvalidToken()
    if not user.is_active:
        raise InvalidToken("This account is deactivated.")


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the user, and the API key they used if any."""

    user: User
    api_key_id: uuid.UUID | None = None


@dataclass(frozen=True, slots=True)
class UserStanding:
    """What `/v1` needs of a user, as plain values: who, and their own monthly budget (None: the
    default)."""

    id: uuid.UUID
    monthly_budget_usd: Decimal | None


@dataclass(frozen=True, slots=True)
class Caller:
    """Who calls `/v1`: the user's standing, and the API key they used if any.

    `/v1` changes nothing on the account, so `identify_caller` reads these columns in one query
    on a connection of its own instead of loading ORM objects into the route's session: the same
    checks as `AccountService.authenticate`, at about half the CPU of every call's first step.
    """

    user: UserStanding
    api_key_id: uuid.UUID | None = None


async def identify_caller(engine: AsyncEngine, jwt_key: str, token: str) -> Caller:
    """The `/v1` caller behind a bearer token: an API key or an access JWT.

    Raises:
        InvalidToken: bad, expired or revoked credentials, or a deactivated or deleted user.
    """
    _check_token_text(token)
    if not looks_like_api_key(token):
        claims = decode_token(jwt_key, token, expected_type="access")
        async with engine.connect() as connection:
            row = await repository.find_user_standing(connection, claims.subject)
        _check_standing(row)
        return Caller(_standing(row))
    async with engine.connect() as connection:
        row = await repository.find_key_holder(connection, api_key_lookup_prefix(token))
        now = utcnow()
        key = _verified_key(token, row, now)
        _check_standing(key)
        if _claim_touch(key.key_id, key.last_used_at, now):
            try:
                await repository.touch_api_key(connection, key.key_id, now)
                await connection.commit()
            except BaseException:
                _RECENT_TOUCHES.pop(key.key_id, None)  # not written: the next call may try again
                raise
    return Caller(_standing(key), api_key_id=key.key_id)


def _standing(row: Any) -> UserStanding:
    return UserStanding(row.user_id, row.monthly_budget_usd)


class AccountService:
    """Accounts and authentication, over one database session."""

    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        limiter: RateLimiter,
        codec: CursorCodec,
    ) -> None:
        self.session = session
        self.settings = settings
        self.limiter = limiter
        self.codec = codec

    # -- tokens -----------------------------------------------------------------------------

    def _issue_tokens(self, user: User, family_id: uuid.UUID | None = None) -> TokenPair:
        """A new access token and a new refresh token (recorded in `family_id`, or a new family)."""
        now = utcnow()
        key = self.settings.jwt_key
        access, _ = encode_token(
            key,
            subject=user.id,
            token_type="access",
            ttl_seconds=self.settings.access_token_ttl_seconds,
            token_id=new_id(),
            now=now,
        )
        family = family_id or new_id()
        refresh_id = new_id()
        refresh, refresh_expires = encode_token(
            key,
            subject=user.id,
            token_type="refresh",
            ttl_seconds=self.settings.refresh_token_ttl_seconds,
            token_id=refresh_id,
            family_id=family,
            now=now,
        )
        row = repository.add_refresh_token(
            self.session, user_id=user.id, family_id=family, expires_at=refresh_expires
        )
        row.id = refresh_id
        return TokenPair(
            access_token=access,
            refresh_token=refresh,
            expires_in=self.settings.access_token_ttl_seconds,
        )

    async def _commit_new_email(self) -> None:
        """Commit, turning a lost race for the same email into a 409."""
        try:
            await self.session.commit()
        except IntegrityError as exc:
            await self.session.rollback()
            raise Conflict("An account with this email already exists.") from exc

    async def _ensure_email_free(self, email: str) -> None:
        if await repository.get_user_by_email(self.session, email) is not None:
            raise Conflict("An account with this email already exists.")

    # -- sign-up and sign-in ----------------------------------------------------------------

    @traced(name="accounts.register", skip_input=True)
    async def register(
        self, *, email: str, password: str, display_name: str | None, client_ip: str
    ) -> tuple[User, TokenPair]:
        """Create an account and sign it in."""
        await self.limiter.hit(
            f"register:ip:{client_ip}", self.settings.rate_limit_login_per_minute
        )
        await self._ensure_email_free(email)
        user = User(
            email=email,
            password_hash=await hash_password(password),
            display_name=display_name or email.split("@", 1)[0][:100],
        )
        self.session.add(user)
        await self.session.flush()
        tokens = self._issue_tokens(user)
        await self._commit_new_email()
        return user, tokens

    @traced(name="accounts.login", skip_input=True)
    async def login(self, *, email: str, password: str, client_ip: str) -> tuple[User, TokenPair]:
        """Sign in with email and password.

        An unknown email and a wrong password get the same answer in about the same time.
        """
        limit = self.settings.rate_limit_login_per_minute
        await self.limiter.hit(f"login:ip:{client_ip}", limit)
        # Per email only failures count, so that nobody can lock an owner out of their account
        # by sending requests with their email.
        email_key = f"login:email:{email}"
        await self.limiter.check(email_key, limit)
        user = await repository.get_user_by_email(self.session, email)
        matches = await verify_password(password, user.password_hash if user else None)
        if user is None or not matches:
            await self.limiter.hit(email_key, limit)
            raise InvalidCredentials()
        if not user.is_active:
            raise Forbidden("This account is deactivated.")
        tokens = self._issue_tokens(user)
        await self.session.commit()
        return user, tokens

    @traced(name="accounts.create_guest", skip_input=True)
    async def create_guest(self, *, client_ip: str) -> tuple[User, TokenPair]:
        """A new guest account, signed in; it may be upgraded later."""
        await self.limiter.hit(
            f"register:ip:{client_ip}", self.settings.rate_limit_login_per_minute
        )
        user = User(email=None, display_name=GUEST_DISPLAY_NAME, is_guest=True)
        self.session.add(user)
        await self.session.flush()
        tokens = self._issue_tokens(user)
        await self.session.commit()
        return user, tokens

    @traced(name="accounts.upgrade", skip_input=True)
    async def upgrade(self, user: User, *, email: str, password: str) -> tuple[User, TokenPair]:
        """Give a guest an email and password, keeping the same user and all their data.

        Like a password change, it ends every earlier sign-in (the guest's refresh tokens, which
        anyone holding a copy could otherwise go on using): only the tokens it answers work.
        """
        if not user.is_guest:
            raise Conflict("Only a guest account can be upgraded.")
        await self._ensure_email_free(email)
        # Before the user's changes: the statement would flush them first, and a lost race for
        # the email would then fail here rather than as the commit's 409. A failed commit rolls
        # the revocation back with the rest.
        await repository.revoke_user_refresh_tokens(self.session, user.id, utcnow())
        user.email = email
        user.password_hash = await hash_password(password)
        user.is_guest = False
        if user.display_name == GUEST_DISPLAY_NAME:
            user.display_name = email.split("@", 1)[0][:100]
        tokens = self._issue_tokens(user)
        await self._commit_new_email()
        return user, tokens

    @traced(name="accounts.refresh", skip_input=True)
    async def refresh(self, *, refresh_token: str) -> TokenPair:
        """Spend a refresh token for a new pair in the same family.

        A token presented a second time (stolen, or replayed) revokes its whole family.
        """
        claims = decode_token(self.settings.jwt_key, refresh_token, expected_type="refresh")
        row = await repository.get_refresh_token(self.session, claims.token_id)
        if row is None or row.user_id != claims.subject or row.revoked_at is not None:
            raise InvalidToken()
        now = utcnow()
        if not await repository.spend_refresh_token(self.session, row.id, now):
            await repository.revoke_family(self.session, row.family_id, now)
            await self.session.commit()
            raise InvalidToken("This refresh token was already used; its session is now revoked.")
        user = await repository.get_user(self.session, row.user_id)
        if user is None or not user.is_active:
            await self.session.commit()
            raise InvalidToken()
        tokens = self._issue_tokens(user, family_id=row.family_id)
        await self.session.commit()
        return tokens

    @traced(name="accounts.logout", skip_input=True)
    async def logout(self, *, refresh_token: str) -> None:
        """Revoke the refresh token's family (this sign-in on every device that shares it)."""
        claims = decode_token(self.settings.jwt_key, refresh_token, expected_type="refresh")
        row = await repository.get_refresh_token(self.session, claims.token_id)
        if row is None or row.user_id != claims.subject:
            raise InvalidToken()
        await repository.revoke_family(self.session, row.family_id, utcnow())
        await self.session.commit()

    # -- every request ----------------------------------------------------------------------

    @traced(name="accounts.authenticate", skip_input=True)
    async def authenticate(self, token: str) -> Principal:
        """The caller behind a bearer token: an access JWT or an API key.

        Raises:
            InvalidToken: bad, expired or revoked credentials, or a deactivated or deleted user.
        """
        _check_token_text(token)
        if looks_like_api_key(token):
            return await self._authenticate_api_key(token)
        claims = decode_token(self.settings.jwt_key, token, expected_type="access")
        user = await repository.get_user(self.session, claims.subject)
        return Principal(self._usable(user))

    async def _authenticate_api_key(self, token: str) -> Principal:
        found = await repository.find_api_key_by_prefix(self.session, api_key_lookup_prefix(token))
        now = utcnow()
        key = _verified_key(token, None if found is None else found[0], now)
        user = self._usable(found[1] if found else None)
        # Read now: a failed commit expires the key, and reading it then would mask the
        # database's error (a busy database is a 503) with one of the session's own (a 500).
        key_id = key.id
        if _claim_touch(key_id, key.last_used_at, now):
            key.last_used_at = now
            try:
                await self.session.commit()
            except BaseException:
                _RECENT_TOUCHES.pop(key_id, None)  # not written: the next call may try again
                raise
        return Principal(user, api_key_id=key_id)

    @staticmethod
    def _usable(user: User | None) -> User:
        if user is None:
            raise InvalidToken()
        _check_standing(user)
        return user

    # -- the current user -------------------------------------------------------------------

    @traced(name="accounts.update_me")
    async def update_me(self, user: User, *, display_name: str | None) -> User:
        """Change the caller's own profile."""
        if display_name is not None:
            user.display_name = display_name
        await self.session.commit()
        return user

    @traced(name="accounts.change_password", skip_input=True)
    async def change_password(
        self, user: User, *, current_password: str, new_password: str
    ) -> User:
        """Set a new password after checking the current one; signs out every other session."""
        if user.is_guest or user.password_hash is None:
            raise Conflict("A guest has no password; upgrade the account first.")
        await self.limiter.hit(
            f"password:user:{user.id}", self.settings.rate_limit_login_per_minute
        )
        if not await verify_password(current_password, user.password_hash):
            raise ValidationFailed.for_field(
                "body.current_password", "The current password is incorrect."
            )
        user.password_hash = await hash_password(new_password)
        await repository.revoke_user_refresh_tokens(self.session, user.id, utcnow())
        await self.session.commit()
        return user

    # -- admin ------------------------------------------------------------------------------

    @traced(name="accounts.list_users")
    async def list_users(
        self, *, q: str | None, cursor: str | None, limit: int
    ) -> tuple[list[User], str | None]:
        """A page of every user, newest first (admins only; checked by the caller's route)."""
        return await repository.list_users(
            self.session, codec=self.codec, cursor=cursor, limit=limit, q=q
        )

    @traced(name="accounts.admin_update_user")
    async def admin_update_user(
        self, admin: User, user_id: uuid.UUID, changes: dict[str, Any]
    ) -> User:
        """Activate, deactivate, promote, demote, or set the budget of a user.

        Args:
            admin: the acting admin (may not deactivate or demote themselves).
            user_id: whom to change.
            changes: only the fields the request set (`is_active`, `is_admin`,
                `monthly_budget_usd`; a null budget means unlimited).
        """
        if not admin.is_admin:
            raise Forbidden("Only admins may manage users.")
        user = await repository.get_user(self.session, user_id)
        if user is None:
            raise NotFound("No such user.")
        if user.id == admin.id and (
            changes.get("is_active") is False or changes.get("is_admin") is False
        ):
            raise Conflict("Admins cannot deactivate or demote themselves.")
        for field in ("is_active", "is_admin"):
            if changes.get(field) is not None:
                setattr(user, field, changes[field])
        if "monthly_budget_usd" in changes:
            user.monthly_budget_usd = changes["monthly_budget_usd"]
        if changes.get("is_active") is False:
            await repository.revoke_user_refresh_tokens(self.session, user.id, utcnow())
        await self.session.commit()
        return user
