"""usage: budget_reservations.message_id, so a reply ended by the sweep settles its own hold

Revision ID: 5d1c0a7e9b42
Revises: b9557644480c
Create Date: 2026-12-01 23:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "5d1c0a7e9b42"
down_revision: str | None = "b9557644480c"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("budget_reservations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("message_id", sa.Uuid(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_budget_reservations_message_id"), ["message_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("budget_reservations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_budget_reservations_message_id"))
        batch_op.drop_column("message_id")
