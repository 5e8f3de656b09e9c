"""The one cost formula, the one token estimate, and the bounds that keep every amount the meter
writes storable.

A cost is tokens times a price per million tokens. Whatever the input — a caller's huge
`max_tokens`, a provider reporting absurd usage, an admin's top price — the result is a finite,
non-negative `Decimal` that the money columns can hold: token counts are clamped to what their
32-bit columns hold, one call's cost to what a message's cost column holds, and amounts are
rounded to the columns' ten decimal places. A month's totals saturate in SQL at their column's
limit (`usage.repository`).

Where a provider reports no token counts (a stopped reply, the offline model, budget holds, the
context window's trim), they are estimated at about four characters a token, as with English
text and common tokenizers (`tokens_for_chars`). Free of any provider library, so that what only
estimates does not import one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

MILLION = Decimal(1_000_000)
# Token counts are stored in 32-bit integer columns.
MAX_TOKENS = 2**31 - 1
# What one call's cost may be: a message's `cost_usd` column is NUMERIC(14, 8).
MAX_CALL_COST_USD = Decimal("999999.99999999")
# What a month's spent or reserved total may be: the budget columns are NUMERIC(20, 10).
MAX_PERIOD_USD = Decimal("9999999999.9999999999")
# The money columns' scale.
MONEY_QUANTUM = Decimal("1e-10")
ZERO = Decimal(0)
CHARS_PER_TOKEN = 4


def bounded_tokens(count: int) -> int:
    """A token count as it can be stored: never negative, at most `MAX_TOKENS`."""
    if count <= 0:
        return 0
    return min(count, MAX_TOKENS)


def bounded_usd(amount: Decimal, limit: Decimal = MAX_CALL_COST_USD) -> Decimal:
    """An amount as it can be stored: finite, in `[0, limit]`, at the columns' scale (a NaN,
    an infinity or a negative amount is 0)."""
    try:
        if not amount.is_finite() or amount <= ZERO:
            return ZERO
        return min(amount, limit).quantize(MONEY_QUANTUM)
    except InvalidOperation:  # too many digits for the context: only a huge amount gets here
        return limit


def cost_usd(
    input_tokens: int,
    output_tokens: int,
    *,
    input_price_per_mtok: Decimal,
    output_price_per_mtok: Decimal,
) -> Decimal:
    """What this many tokens cost at these prices (USD per million tokens), bounded as
    `bounded_usd` says."""
    raw = (
        Decimal(bounded_tokens(input_tokens)) * input_price_per_mtok
        + Decimal(bounded_tokens(output_tokens)) * output_price_per_mtok
    ) / MILLION
    return bounded_usd(raw)


class Prices(Protocol):
    """Prices in USD per million tokens: a catalog entry's, say."""

    @property
    def input_price_per_mtok(self) -> Decimal: ...

    @property
    def output_price_per_mtok(self) -> Decimal: ...


def estimate_cost(prices: Prices, *, input_tokens: int, output_tokens: int) -> Decimal:
    """What a request of this size would cost at these prices (`cost_usd`)."""
    return cost_usd(
        input_tokens,
        output_tokens,
        input_price_per_mtok=prices.input_price_per_mtok,
        output_price_per_mtok=prices.output_price_per_mtok,
    )


def usd_for_display(amount: Decimal | None) -> float:
    """A stored amount as a JSON number: rounded to the columns' scale, never negative (no
    `-0.0`: a total that floating-point sums on SQLite left a hair below zero is 0)."""
    if amount is None or not amount.is_finite() or amount <= ZERO:
        return 0.0
    return float(min(amount, MAX_PERIOD_USD).quantize(MONEY_QUANTUM))


def tokens_for_chars(count: int, *, round_up: bool = True) -> int:
    """The tokens `count` characters take (`CHARS_PER_TOKEN` a token): rounded up, or down
    with `round_up=False`."""
    if round_up:
        return -(-count // CHARS_PER_TOKEN)
    return count // CHARS_PER_TOKEN


def estimate_tokens(text: str) -> int:
    """The tokens `text` takes, rounded up."""
    return tokens_for_chars(len(text))


def output_tokens_of_parts(parts: Iterable[Mapping[str, Any]]) -> int:
    """The output tokens a reply's saved parts took, rounded up: its text, reasoning and tool
    calls' input (tool results are not the model's output)."""
    return tokens_for_chars(
        sum(len(str(part.get("text") or part.get("input") or "")) for part in parts)
    )
