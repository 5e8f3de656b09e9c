"""Usage tables: one record per chat reply or `/v1` call, a running total per user and month
(`budget_periods`: spent and reserved), and the reservations of requests in flight."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal

from sqlalchemy import ForeignKey, Index, Integer, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from parley.core.db import Base, IdTimestampMixin

# Costs of small requests are fractions of a cent: keep ten decimal places.
MONEY = Numeric(20, 10)


class UsageRecord(IdTimestampMixin, Base):
    """What one chat reply or `/v1` call used and cost. Kept when its chat or API key goes."""

    __tablename__ = "usage_records"
    __table_args__ = (
        Index("ix_usage_records_user_id_created_at_id", "user_id", "created_at", "id"),
        Index("ix_usage_records_created_at_user_id", "created_at", "user_id"),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    api_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_keys.id", ondelete="SET NULL"), index=True
    )
    source: Mapped[str] = mapped_column(String(16))  # "chat" or "v1"
    model_id: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(16))
    input_tokens: Mapped[int] = mapped_column(Integer)
    output_tokens: Mapped[int] = mapped_column(Integer)
    cost_usd: Mapped[Decimal] = mapped_column(MONEY)
    latency_ms: Mapped[int | None] = mapped_column(Integer)
    # The reply a chat record is for; not foreign keys: records outlive deleted chats.
    chat_id: Mapped[uuid.UUID | None]
    message_id: Mapped[uuid.UUID | None]


class BudgetPeriod(IdTimestampMixin, Base):
    """A user's spending in one calendar month (UTC): the settled cost, and what requests in
    flight have reserved. Budget checks read and change this one row, atomically."""

    __tablename__ = "budget_periods"
    __table_args__ = (UniqueConstraint("user_id", "period", name="uq_budget_periods_user_period"),)

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    period: Mapped[str] = mapped_column(String(7))  # "2026-11"
    spent_usd: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    reserved_usd: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))


class BudgetReservation(IdTimestampMixin, Base):
    """An estimate held against a budget while its request runs; released when it settles, or
    by `UsageMeter.release_expired` once `expires_at` passes (its worker died)."""

    __tablename__ = "budget_reservations"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    period: Mapped[str] = mapped_column(String(7))
    amount_usd: Mapped[Decimal] = mapped_column(MONEY)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    # The chat reply holding it (None for `/v1` calls and leases): a reply ended by the sweep
    # (its worker died) settles its own hold.
    message_id: Mapped[uuid.UUID | None] = mapped_column(index=True)
