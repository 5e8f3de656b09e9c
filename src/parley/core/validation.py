"""Input rules shared by every domain's request schemas.

PostgreSQL cannot store NUL characters in text, and no database can store a lone surrogate (it is
not valid UTF-8): both are refused at the edge as a 422, never left to fail as a 500 in the driver.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict


def reject_unstorable_text(value: str) -> str:
    """Refuse NUL characters and lone surrogates.

    Raises:
        ValueError: the text holds a character no database here can store.
    """
    if "\x00" in value:
        raise ValueError("NUL characters are not allowed")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("the text is not valid Unicode (lone surrogate)") from exc
    return value


StorableText = Annotated[str, AfterValidator(reject_unstorable_text)]


def in_utc(value: datetime) -> datetime:
    """A timezone-aware time converted to UTC.

    Raises:
        ValueError: the time cannot be expressed in UTC (past year 9999 or before year 1).
    """
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("is out of range") from exc


UtcDatetime = Annotated[AwareDatetime, AfterValidator(in_utc)]


class RequestModel(BaseModel):
    """A request body: unknown fields are refused, so nothing can be slipped in."""

    model_config = ConfigDict(extra="forbid")
