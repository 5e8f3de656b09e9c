"""model catalog: the models users may chat with, seeded at start-up, edited by admins

Revision ID: c09eaec14278
Revises: fed58c272f53
Create Date: 2026-11-26 09:24:01.810603
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import parley.core.db

revision: str = "c09eaec14278"
down_revision: str | None = "fed58c272f53"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# At most one default: a partial unique index, on SQLite and PostgreSQL alike.
_ONLY_DEFAULTS = sa.text("is_default")


def upgrade() -> None:
    op.create_table(
        "model_catalog",
        sa.Column("model_id", sa.String(length=200), nullable=False),
        sa.Column("provider", sa.String(length=50), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("context_window", sa.Integer(), nullable=True),
        sa.Column("supports_tools", sa.Boolean(), nullable=False),
        sa.Column("input_price_per_mtok", sa.Numeric(precision=12, scale=6), nullable=False),
        sa.Column("output_price_per_mtok", sa.Numeric(precision=12, scale=6), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("available", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("admin_overrides", sa.JSON(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", parley.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", parley.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_model_catalog")),
        sa.UniqueConstraint("model_id", name=op.f("uq_model_catalog_model_id")),
    )
    with op.batch_alter_table("model_catalog", schema=None) as batch_op:
        batch_op.create_index("ix_model_catalog_position_id", ["position", "id"], unique=False)
        batch_op.create_index(
            "uq_model_catalog_is_default",
            ["is_default"],
            unique=True,
            sqlite_where=_ONLY_DEFAULTS,
            postgresql_where=_ONLY_DEFAULTS,
        )


def downgrade() -> None:
    with op.batch_alter_table("model_catalog", schema=None) as batch_op:
        batch_op.drop_index("uq_model_catalog_is_default")
        batch_op.drop_index("ix_model_catalog_position_id")

    op.drop_table("model_catalog")
