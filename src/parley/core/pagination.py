"""Keyset pagination with opaque cursors.

A cursor names the last row of a page by its sort value and id; the next page starts strictly after
it, so rows inserted meanwhile never shift a page (no item lost or repeated), and the cost of a page
does not grow with how deep it is. Cursors are base64url JSON, signed with an HMAC so a forged or
mangled one is a clear 422 rather than a query on made-up values.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, and_, or_, true
from sqlalchemy.orm import InstrumentedAttribute

from parley.core.errors import ValidationFailed

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
_CURSOR_FIELD = "query.cursor"

RowT = TypeVar("RowT")


@dataclass(frozen=True, slots=True)
class SortKey:
    """How a list is ordered: one column (nullable ones sort last), then the row id as tiebreak.

    Attributes:
        name: the name clients use (`due_at`); a cursor records it and is refused under another.
        column: the mapped column to sort on.
        descending: newest/highest first.
        kind: how the value is written into a cursor: `datetime`, `int`, `str` or `uuid`.
        nullable: whether the column may be null (nulls sort after every value).
    """

    name: str
    column: InstrumentedAttribute[Any]
    descending: bool
    kind: str = "datetime"
    nullable: bool = False


class CursorCodec:
    """Encodes and decodes cursors signed with a server secret."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(("parley-cursor:" + secret).encode()).digest()

    def _sign(self, payload: bytes) -> str:
        return hmac.new(self._key, payload, hashlib.sha256).hexdigest()[:16]

    def encode(self, sort: SortKey, value: Any, row_id: uuid.UUID) -> str:
        """A cursor pointing just after the row with this sort value and id."""
        if value is None:
            encoded_value: Any = None
        elif sort.kind == "datetime":
            encoded_value = value.isoformat()
        elif sort.kind == "uuid":
            encoded_value = str(value)
        else:
            encoded_value = value
        payload = json.dumps(
            [sort.name, encoded_value, str(row_id)], separators=(",", ":")
        ).encode()
        token = payload + b"." + self._sign(payload).encode()
        return base64.urlsafe_b64encode(token).decode().rstrip("=")

    def decode(self, sort: SortKey, cursor: str) -> tuple[Any, uuid.UUID]:
        """The (sort value, id) a cursor points after.

        Raises:
            ValidationFailed: the cursor is malformed, forged, or from a list sorted another way.
        """
        invalid = ValidationFailed.for_field(_CURSOR_FIELD, "The cursor is invalid or expired.")
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            payload, _, signature = raw.rpartition(b".")
            if not hmac.compare_digest(self._sign(payload).encode(), signature):
                raise invalid
            name, value, row_id = json.loads(payload)
            if name != sort.name:
                raise ValidationFailed.for_field(
                    _CURSOR_FIELD, "The cursor belongs to a list sorted another way."
                )
            if value is not None:
                if sort.kind == "datetime":
                    value = datetime.fromisoformat(value)
                elif sort.kind == "int":
                    value = int(value)
                elif sort.kind == "uuid":
                    value = uuid.UUID(value)
                else:
                    value = str(value)
            return value, uuid.UUID(row_id)
        except ValidationFailed:
            raise
        except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
            raise invalid from exc


def _after(sort: SortKey, id_column: Any, value: Any, row_id: uuid.UUID) -> ColumnElement[bool]:
    """Rows strictly after (value, id) in the order `sort` defines, nulls last."""
    column = sort.column
    if value is None:
        # Inside the trailing block of nulls: only later ids remain.
        id_after = id_column < row_id if sort.descending else id_column > row_id
        return and_(column.is_(None), id_after)
    if sort.descending:
        beyond = column < value
        tie = and_(column == value, id_column < row_id)
    else:
        beyond = column > value
        tie = and_(column == value, id_column > row_id)
    if sort.nullable:
        return or_(beyond, tie, column.is_(None))
    return or_(beyond, tie)


class PageFinisher:
    """Turns the rows of a paginated statement into `(items, next_cursor)`."""

    def __init__(self, sort: SortKey, limit: int, codec: CursorCodec) -> None:
        self.sort = sort
        self.limit = limit
        self.codec = codec

    def __call__(self, rows: Sequence[RowT]) -> tuple[list[RowT], str | None]:
        items = list(rows[: self.limit])
        if len(rows) <= self.limit or not items:
            return items, None
        last: Any = items[-1]
        return items, self.codec.encode(self.sort, getattr(last, self.sort.column.key), last.id)


def paginate(
    statement: Select[Any],
    *,
    sort: SortKey,
    id_column: Any,
    cursor: str | None,
    limit: int,
    codec: CursorCodec,
) -> tuple[Select[Any], PageFinisher]:
    """Order, filter past the cursor and limit `statement` (one extra row, to know if more follow).

    Returns:
        The statement to run, and a `PageFinisher` that turns its rows into `(items, next_cursor)`.
    """
    condition: ColumnElement[bool] = true()
    if cursor:
        value, row_id = codec.decode(sort, cursor)
        condition = _after(sort, id_column, value, row_id)
    column_order = sort.column.desc() if sort.descending else sort.column.asc()
    id_order = id_column.desc() if sort.descending else id_column.asc()
    if sort.nullable:
        column_order = column_order.nulls_last()
    statement = statement.where(condition).order_by(column_order, id_order).limit(limit + 1)
    return statement, PageFinisher(sort, limit, codec)
