"""Token estimates where a provider reports none (a stopped reply, the offline model, budget holds):
about four characters a token, as with English text and common tokenizers.

Kept free of any provider library, so that what only estimates does not import one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """The tokens `text` takes, rounded up."""
    return tokens_for_chars(len(text))


def tokens_for_chars(count: int) -> int:
    """The tokens `count` characters take, rounded up."""
    return -(-count // CHARS_PER_TOKEN)


def output_tokens_of_parts(parts: Iterable[Mapping[str, Any]]) -> int:
    """The output tokens a reply's saved parts took: its text, reasoning and tool calls' input
    (tool results are not the model's output)."""
    return tokens_for_chars(
        sum(len(str(part.get("text") or part.get("input") or "")) for part in parts)
    )
