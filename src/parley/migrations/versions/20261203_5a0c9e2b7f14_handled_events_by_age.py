"""handled_events gain an index by age, so the hourly purge deletes a range, not a scan

Revision ID: 5a0c9e2b7f14
Revises: e7d1a4c9b350
Create Date: 2026-12-03 20:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5a0c9e2b7f14"
down_revision: str | None = "e7d1a4c9b350"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_handled_events_created_at", "handled_events", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_handled_events_created_at", table_name="handled_events")
