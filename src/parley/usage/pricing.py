"""The one cost formula, and the bounds that keep every amount the meter writes storable.

A cost is tokens times a price per million tokens. Whatever the input — a caller's huge
`max_tokens`, a provider reporting absurd usage, an admin's top price — the result is a finite,
non-negative `Decimal` that the money columns can hold: token counts are clamped to what their
32-bit columns hold, one call's cost to what a message's cost column holds, and amounts are
rounded to the columns' ten decimal places. A month's totals saturate in SQL at their column's
limit (`usage.repository`).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

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


def usd_for_display(amount: Decimal | None) -> float:
    """A stored amount as a JSON number: rounded to the columns' scale, never negative (no
    `-0.0`: a total that floating-point sums on SQLite left a hair below zero is 0)."""
    if amount is None or not amount.is_finite() or amount <= ZERO:
        return 0.0
    return float(min(amount, MAX_PERIOD_USD).quantize(MONEY_QUANTUM))
