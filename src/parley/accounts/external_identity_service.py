"""The user behind an external token: found by `(iss, sub)` in `external_identities`, or made on
the issuer's first token for that subject, with the token's `email` and `name` as the profile.

Two first requests at once make one user: the pair is unique, and the loser of the race reads the
winner's row. An email claim never links the token to an existing account: an external issuer
could claim anyone's address, so a local account's email is never taken over. When a user already
has the claimed email, the new user is made without one (the claim is kept on the identity row),
and the two accounts stay apart.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.accounts import repository
from parley.accounts.external import ExternalClaims
from parley.core.errors import InvalidToken

CREATE_ATTEMPTS = 3
FALLBACK_DISPLAY_NAME = "User"


def _display_name(claims: ExternalClaims) -> str:
    if claims.name:
        return claims.name
    if claims.email:
        return claims.email.split("@", 1)[0][:100]
    return FALLBACK_DISPLAY_NAME


async def external_user_standing(engine: AsyncEngine, claims: ExternalClaims) -> Row[Any]:
    """The standing (as `repository.find_user_standing`) of the user behind verified claims,
    made now when this is the subject's first token.

    Raises:
        InvalidToken: the user could not be found nor made (a race that kept failing).
    """
    for _ in range(CREATE_ATTEMPTS):
        async with engine.connect() as connection:
            row = await repository.find_external_standing(connection, claims.issuer, claims.subject)
        if row is not None:
            return row
        try:
            async with engine.begin() as connection:
                email = claims.email
                if email is not None and await repository.email_taken(connection, email):
                    email = None  # never linked to, nor taken from, the account that has it
                await repository.add_external_user(
                    connection,
                    issuer=claims.issuer,
                    subject=claims.subject,
                    email=email,
                    claimed_email=claims.email,
                    display_name=_display_name(claims),
                )
        except IntegrityError:
            # Another request made this identity (read it next), or took the email in between
            # (the next attempt sees it taken).
            continue
    async with engine.connect() as connection:
        row = await repository.find_external_standing(connection, claims.issuer, claims.subject)
    if row is None:
        raise InvalidToken()
    return row
