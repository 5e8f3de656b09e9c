"""tasks: tasks and task_tags

Revision ID: fed58c272f53
Revises: 1515edf2980b
Create Date: 2026-11-26 09:19:37.140762
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import parley.core.db

revision: str = "fed58c272f53"
down_revision: str | None = "1515edf2980b"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("title", sa.String(length=500), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("completed", sa.Boolean(), nullable=False),
        sa.Column("completed_at", parley.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("priority", sa.SmallInteger(), nullable=False),
        sa.Column("due_at", parley.core.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", parley.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", parley.core.db.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("priority IN (1, 2, 3)", name=op.f("ck_tasks_priority_rank")),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_tasks_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
    )
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_tasks_user_id_created_at_id", ["user_id", "created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_tasks_user_id_due_at_id", ["user_id", "due_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_tasks_user_id_priority_id", ["user_id", "priority", "id"], unique=False
        )
        batch_op.create_index(
            "ix_tasks_user_id_completed_created_at_id",
            ["user_id", "completed", "created_at", "id"],
            unique=False,
        )

    op.create_table(
        "task_tags",
        sa.Column("task_id", sa.Uuid(), nullable=False),
        sa.Column("tag", sa.String(length=50), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_task_tags_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_task_tags_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("task_id", "tag", name=op.f("pk_task_tags")),
    )
    with op.batch_alter_table("task_tags", schema=None) as batch_op:
        batch_op.create_index(
            "ix_task_tags_user_id_tag_task_id", ["user_id", "tag", "task_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("task_tags", schema=None) as batch_op:
        batch_op.drop_index("ix_task_tags_user_id_tag_task_id")

    op.drop_table("task_tags")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_index("ix_tasks_user_id_completed_created_at_id")
        batch_op.drop_index("ix_tasks_user_id_priority_id")
        batch_op.drop_index("ix_tasks_user_id_due_at_id")
        batch_op.drop_index("ix_tasks_user_id_created_at_id")

    op.drop_table("tasks")
