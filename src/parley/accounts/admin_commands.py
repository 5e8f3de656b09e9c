"""Account operations for the command line, outside any HTTP request."""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError

from parley.accounts import repository
from parley.accounts.models import User
from parley.accounts.schemas import Email, Password
from parley.core.db import Database
from parley.core.errors import Conflict, ValidationFailed
from parley.core.security import hash_password
from parley.settings import Settings

_email = TypeAdapter(Email)
_password = TypeAdapter(Password)


async def create_user(
    settings: Settings, *, email: str, password: str, admin: bool, display_name: str | None
) -> User:
    """Create a user with the same rules as sign-up (valid email, 8..128 character password).

    Raises:
        ValidationFailed: the email or password is not acceptable.
        Conflict: the email is taken.
    """
    try:
        email = _email.validate_python(email)
    except ValidationError as exc:
        raise ValidationFailed.for_field("email", f"invalid email: {email}") from exc
    try:
        password = _password.validate_python(password)
    except ValidationError as exc:
        raise ValidationFailed.for_field(
            "password", "the password must be 8 to 128 characters"
        ) from exc
    database = Database.from_settings(settings)
    try:
        async with database.sessionmaker() as session:
            if await repository.get_user_by_email(session, email) is not None:
                raise Conflict(f"a user with email {email} already exists")
            user = User(
                email=email,
                password_hash=await hash_password(password),
                display_name=(display_name or email.split("@", 1)[0])[:100],
                is_admin=admin,
            )
            session.add(user)
            await session.commit()
            return user
    finally:
        await database.dispose()
