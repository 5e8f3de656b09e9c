"""Bounded JSON for event data: `bounded_json` copies a JSON-like value with every string cut to
a length, every list and object to a number of items and the nesting to a depth, so that no
argument a caller sends (a tool's 10 MB title, a list of a million tags) can bloat the outbox or
the audit log. What is cut shows it: a string ends with `…`, a value too large even then is
replaced by `{"truncated": true, "size_bytes": <its size, strings cut>}`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

ELLIPSIS = "…"
MAX_STRING_CHARS = 1000
MAX_BYTES = 8 * 1024
MAX_ITEMS = 100
MAX_DEPTH = 10
# Tried in turn until the value fits in its bytes: (string chars, items per list or object).
_TIGHTER = ((100, 20), (20, 5))


def bounded_json(
    value: Any,
    *,
    max_chars: int = MAX_STRING_CHARS,
    max_bytes: int = MAX_BYTES,
) -> Any:
    """A JSON-ready copy of `value` within the bounds (see the module docstring).

    Args:
        value: JSON-like (dicts, lists, strings, numbers, booleans, None); anything else is
            written as its `str`.
        max_chars: the longest string kept whole.
        max_bytes: the largest UTF-8 JSON the copy may take.
    """
    first_size: int | None = None
    for chars, items in ((max_chars, MAX_ITEMS), *_TIGHTER):
        shrunk = _shrink(value, min(chars, max_chars), items, 0)
        size = _size(shrunk)
        if size <= max_bytes:
            return shrunk
        first_size = first_size or size
    return {"truncated": True, "size_bytes": first_size}


def _size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


def _text(value: str, max_chars: int) -> str:
    return value if len(value) <= max_chars else value[:max_chars] + ELLIPSIS


def _shrink(value: Any, max_chars: int, max_items: int, depth: int) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        # NaN and infinities are no JSON (PostgreSQL's json type refuses them).
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return _text(value, max_chars)
    if depth >= MAX_DEPTH:
        return ELLIPSIS
    if isinstance(value, Mapping):
        shrunk: dict[str, Any] = {}
        for index, (key, item) in enumerate(value.items()):
            if index == max_items:
                shrunk[ELLIPSIS] = f"{len(value) - max_items} more"
                break
            shrunk[_text(str(key), 100)] = _shrink(item, max_chars, max_items, depth + 1)
        return shrunk
    if isinstance(value, list | tuple):
        items = [_shrink(item, max_chars, max_items, depth + 1) for item in value[:max_items]]
        if len(value) > max_items:
            items.append(f"{ELLIPSIS} {len(value) - max_items} more")
        return items
    return _text(str(value), max_chars)
