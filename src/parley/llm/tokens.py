"""Token estimates where a provider reports none (a stopped reply, the offline model, budget holds):
about four characters a token, as with English text and common tokenizers.

Kept free of any provider library, so that what only estimates does not import one.
"""

from __future__ import annotations

CHARS_PER_TOKEN = 4


def estimate_tokens(text: str) -> int:
    """The tokens `text` takes, rounded up."""
    return tokens_for_chars(len(text))


def tokens_for_chars(count: int) -> int:
    """The tokens `count` characters take, rounded up."""
    return -(-count // CHARS_PER_TOKEN)
