"""events: the outbox (outbox_events) and what each consumer has handled (handled_events)

Revision ID: b4e8c2d17a90
Revises: 3316da82fac1
Create Date: 2026-12-03 10:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import parley.core.db

revision: str = "b4e8c2d17a90"
down_revision: str | None = "3316da82fac1"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = sa.text("position IS NULL")
NUMBERED = sa.text("position IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "outbox_events",
        sa.Column("type", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("time", parley.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=True),
        sa.Column("published_at", parley.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", parley.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", parley.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_outbox_events_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_events")),
    )
    op.create_index(
        "ix_outbox_events_pending",
        "outbox_events",
        ["id"],
        postgresql_where=PENDING,
        sqlite_where=PENDING,
    )
    # Partial: a new event has no position, so the INSERT of a change's transaction skips them.
    op.create_index(
        "ix_outbox_events_position",
        "outbox_events",
        ["position"],
        unique=True,
        postgresql_where=NUMBERED,
        sqlite_where=NUMBERED,
    )
    op.create_index(
        "ix_outbox_events_user_position",
        "outbox_events",
        ["user_id", "position"],
        postgresql_where=NUMBERED,
        sqlite_where=NUMBERED,
    )
    op.create_table(
        "handled_events",
        sa.Column("consumer", sa.String(length=100), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", parley.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("consumer", "event_id", name=op.f("pk_handled_events")),
    )


def downgrade() -> None:
    op.drop_table("handled_events")
    op.drop_index("ix_outbox_events_user_position", table_name="outbox_events")
    op.drop_index("ix_outbox_events_position", table_name="outbox_events")
    op.drop_index("ix_outbox_events_pending", table_name="outbox_events")
    op.drop_table("outbox_events")
