"""Account use cases: sign-up, sign-in, guests and their upgrade, token rotation, the current user,
and admin user management. Authentication of every request is in `authentication.py`, API keys in
`api_key_service.py`.

Each public method is one use case and commits once at its end. Errors are Parley errors; nothing
here knows about HTTP. Sign-ins, a guest's upgrade and password changes are told as events
(`parley.accounts.events`) in the transaction of their change.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.accounts import repository
from parley.accounts.events import (
    PASSWORD_CHANGED,
    REGISTERED,
    SIGNED_IN,
    UPGRADED,
    PasswordChanged,
    Registered,
    SignedIn,
    Upgraded,
)
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
    decode_token,
    encode_token,
    hash_password,
    verify_password,
)
from parley.core.telemetry import traced
from parley.events.outbox import add_event
from parley.settings import Settings

GUEST_DISPLAY_NAME = "Guest"


class AccountService:
    """Account use cases, over one database session."""

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

    async def _tell(self, event_type: str, user: User, data: BaseModel) -> None:
        """Write an event of the user's account in the use case's transaction."""
        await add_event(
            self.session,
            event_type,
            subject=f"users/{user.id}",
            user_id=user.id,
            data=data.model_dump(mode="json"),
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
        await self._tell(
            REGISTERED, user, Registered(user_id=user.id, email=email, client_ip=_ip(client_ip))
        )
        await self._commit_new_email()
        return user, tokens

    async def check_password(self, *, email: str, password: str, client_ip: str) -> User:
        """The active user with this email and password, within the sign-in rate limits (the
        login's, and the OAuth consent page's sign-in).

        An unknown email and a wrong password get the same answer in about the same time.

        Raises:
            RateLimited: too many attempts from this address, or failures for this email.
            InvalidCredentials: no account has this email and password.
            Forbidden: the account is deactivated.
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
        return user

    @traced(name="accounts.login", skip_input=True)
    async def login(self, *, email: str, password: str, client_ip: str) -> tuple[User, TokenPair]:
        """Sign in with email and password (`check_password`), with new tokens."""
        user = await self.check_password(email=email, password=password, client_ip=client_ip)
        tokens = self._issue_tokens(user)
        await self._tell(
            SIGNED_IN, user, SignedIn(user_id=user.id, method="password", client_ip=_ip(client_ip))
        )
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
        await self._tell(
            SIGNED_IN, user, SignedIn(user_id=user.id, method="guest", client_ip=_ip(client_ip))
        )
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
        # the revocation back with the rest (and the event).
        await repository.revoke_user_refresh_tokens(self.session, user.id, utcnow())
        await self._tell(UPGRADED, user, Upgraded(user_id=user.id, email=email))
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
        await self._tell(PASSWORD_CHANGED, user, PasswordChanged(user_id=user.id))
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


def _ip(client_ip: str) -> str | None:
    """The client's address for an event (None when the server did not see one)."""
    return None if client_ip in ("", "unknown") else client_ip[:100]
