"""Usage responses: totals, groups, the month's budget, per-user rows for admins, and records."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from parley.usage.pricing import usd_for_display
from parley.usage.report_queries import UsageSums


class UsageTotals(BaseModel):
    """Tokens, cost and number of requests (chat replies and `/v1` calls)."""

    input_tokens: int
    output_tokens: int
    cost_usd: float
    requests: int

    @classmethod
    def of(cls, sums: UsageSums) -> UsageTotals:
        """From the repository's sums."""
        return cls(
            input_tokens=sums.input_tokens,
            output_tokens=sums.output_tokens,
            cost_usd=usd_for_display(sums.cost_usd),
            requests=sums.requests,
        )


class UsageGroup(UsageTotals):
    """The totals of one day (`2026-11-26`), model (`openai:gpt-4o-mini`) or API key (its id;
    null for requests made without one)."""

    key: str | None


class BudgetStatus(BaseModel):
    """This calendar month (UTC) against the user's budget."""

    period: str = Field(examples=["2026-11"])
    monthly_budget_usd: float | None = Field(description="Null: unlimited.")
    spent_usd: float
    reserved_usd: float = Field(description="Held by requests still running.")
    remaining_usd: float | None
    resets_at: datetime


class UsageReport(BaseModel):
    """`GET /api/usage`: the caller's usage in `[from, to)`."""

    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(serialization_alias="from", validation_alias="from")
    to: datetime
    group_by: Literal["day", "model", "api_key"] | None
    totals: UsageTotals
    groups: list[UsageGroup]
    budget: BudgetStatus


class UserUsage(UsageTotals):
    """`GET /api/admin/usage`: one user's totals."""

    user_id: uuid.UUID
    email: str | None
    display_name: str
    monthly_budget_usd: float | None = Field(description="The user's own budget; null: none set.")


class UsageRecordPublic(BaseModel):
    """One chat reply or `/v1` call."""

    id: uuid.UUID
    source: Literal["chat", "v1"]
    model_id: str
    status: str
    api_key_id: uuid.UUID | None
    chat_id: uuid.UUID | None
    message_id: uuid.UUID | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_ms: int | None
    created_at: datetime

    @classmethod
    def of(cls, record: object) -> UsageRecordPublic:
        """From a `UsageRecord` row."""
        values = {name: getattr(record, name) for name in cls.model_fields}
        values["cost_usd"] = usd_for_display(values["cost_usd"])
        return cls.model_validate(values)
