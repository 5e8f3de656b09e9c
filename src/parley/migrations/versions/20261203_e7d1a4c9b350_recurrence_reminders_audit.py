"""tasks gain recurrence and reminders; the audit log (audit_records)

Revision ID: e7d1a4c9b350
Revises: b4e8c2d17a90
Create Date: 2026-12-03 13:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import parley.core.db

revision: str = "e7d1a4c9b350"
down_revision: str | None = "b4e8c2d17a90"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HAS_PREVIOUS = sa.text("previous_occurrence_id IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("recurrence", sa.String(length=500), nullable=True))
        batch.add_column(
            sa.Column("remind_at", parley.core.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(
            sa.Column("reminded_at", parley.core.db.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("previous_occurrence_id", sa.Uuid(), nullable=True))
    op.create_index(
        "ix_tasks_previous_occurrence_id",
        "tasks",
        ["previous_occurrence_id"],
        unique=True,
        postgresql_where=HAS_PREVIOUS,
        sqlite_where=HAS_PREVIOUS,
    )
    op.create_table(
        "audit_records",
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("action", sa.String(length=100), nullable=False),
        sa.Column("subject", sa.String(length=200), nullable=False),
        sa.Column("time", parley.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", parley.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", parley.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_audit_records_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_records")),
        sa.UniqueConstraint("event_id", name=op.f("uq_audit_records_event_id")),
    )
    op.create_index("ix_audit_records_user_id_id", "audit_records", ["user_id", "id"])
    op.create_index("ix_audit_records_action_id", "audit_records", ["action", "id"])


def downgrade() -> None:
    op.drop_index("ix_audit_records_action_id", table_name="audit_records")
    op.drop_index("ix_audit_records_user_id_id", table_name="audit_records")
    op.drop_table("audit_records")
    op.drop_index("ix_tasks_previous_occurrence_id", table_name="tasks")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("previous_occurrence_id")
        batch.drop_column("reminded_at")
        batch.drop_column("remind_at")
        batch.drop_column("recurrence")
