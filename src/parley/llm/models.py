"""The model catalog table: one row per model a provider offers, keyed by its catalog id
`<provider>:<model>`.

Rows are never deleted: a model whose provider is no longer configured is marked unavailable, so
the chats that used it keep a name for it and an admin's edits survive the provider coming back.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import JSON, Index, Numeric, String, text
from sqlalchemy.orm import Mapped, mapped_column

from parley.core.db import Base, IdTimestampMixin

PRICE_TYPE = Numeric(12, 6)


class CatalogModel(IdTimestampMixin, Base):
    """A model users may chat with.

    `provider`, `model_name`, `context_window`, `supports_tools`, `available` and `position` follow
    the configuration at every start-up. `name`, the prices, `enabled` and `is_default` follow it
    too until an admin changes them: the fields an admin set are listed in `admin_overrides` and
    seeding leaves them alone from then on.
    """

    __tablename__ = "model_catalog"
    __table_args__ = (
        Index("ix_model_catalog_position_id", "position", "id"),
        # At most one default; two admins moving it at once cannot both win.
        Index(
            "uq_model_catalog_is_default",
            "is_default",
            unique=True,
            sqlite_where=text("is_default"),
            postgresql_where=text("is_default"),
        ),
    )

    model_id: Mapped[str] = mapped_column(String(200), unique=True)
    provider: Mapped[str] = mapped_column(String(50))
    model_name: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(100))
    context_window: Mapped[int | None]
    supports_tools: Mapped[bool] = mapped_column(default=True)
    input_price_per_mtok: Mapped[Decimal] = mapped_column(PRICE_TYPE, default=Decimal(0))
    output_price_per_mtok: Mapped[Decimal] = mapped_column(PRICE_TYPE, default=Decimal(0))
    enabled: Mapped[bool] = mapped_column(default=True)
    is_default: Mapped[bool] = mapped_column(default=False)
    available: Mapped[bool] = mapped_column(default=True)
    position: Mapped[int] = mapped_column(default=0)
    admin_overrides: Mapped[list[str]] = mapped_column(JSON, default=list)
