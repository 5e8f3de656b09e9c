"""Task tables: `tasks` (one row per task) and `task_tags` (one row per tag of a task).

Priority is stored as a small integer rank (1 low, 2 medium, 3 high) so that sorting by it is a
plain index scan in the right order; the API speaks the names. Tags live in their own table, keyed
by task and tag and indexed by (owner, tag), so filtering by tag is an index lookup on SQLite and
PostgreSQL alike (a JSON array column would need a full scan on one of them). Each list query's
filter and sort has a composite index that starts with the owner.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, SmallInteger, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from parley.core.db import Base, IdTimestampMixin

TITLE_MAX_CHARS = 500
DESCRIPTION_MAX_CHARS = 10_000
TAG_MAX_CHARS = 50
MAX_TAGS = 20
RECURRENCE_MAX_CHARS = 500


class Priority(StrEnum):
    """How urgent a task is, as clients name it."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        """The stored value: ranks sort low < medium < high."""
        return _RANKS[self]

    @classmethod
    def from_rank(cls, rank: int) -> Priority:
        """The priority stored as `rank`."""
        return _PRIORITIES[rank]


_RANKS = {Priority.LOW: 1, Priority.MEDIUM: 2, Priority.HIGH: 3}
_PRIORITIES = {rank: priority for priority, rank in _RANKS.items()}


class Task(IdTimestampMixin, Base):
    """One item of a user's todo list."""

    __tablename__ = "tasks"
    __table_args__ = (
        # Every index starts with the owner: each list query reads one user's rows only.
        Index("ix_tasks_user_id_created_at_id", "user_id", "created_at", "id"),
        Index("ix_tasks_user_id_due_at_id", "user_id", "due_at", "id"),
        Index("ix_tasks_user_id_priority_id", "user_id", "priority", "id"),
        Index(
            "ix_tasks_user_id_completed_created_at_id", "user_id", "completed", "created_at", "id"
        ),
        CheckConstraint("priority IN (1, 2, 3)", name="priority_rank"),
        # One next occurrence per completed occurrence, whatever the redeliveries and races.
        Index(
            "ix_tasks_previous_occurrence_id",
            "previous_occurrence_id",
            unique=True,
            postgresql_where=text("previous_occurrence_id IS NOT NULL"),
            sqlite_where=text("previous_occurrence_id IS NOT NULL"),
        ),
    )

    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(String(TITLE_MAX_CHARS))
    description: Mapped[str | None] = mapped_column(Text)
    completed: Mapped[bool] = mapped_column(default=False)
    completed_at: Mapped[datetime | None]
    priority_rank: Mapped[int] = mapped_column(
        "priority", SmallInteger, default=Priority.MEDIUM.rank
    )
    due_at: Mapped[datetime | None]
    # An RFC 5545 RRULE (`FREQ=WEEKLY;BYDAY=MO`): completing the task creates the next one.
    recurrence: Mapped[str | None] = mapped_column(String(RECURRENCE_MAX_CHARS))
    # When to publish `parley.reminder.due.v1`; `reminded_at` is when it was (cleared when
    # `remind_at` changes), so a reminder job that runs twice reminds once.
    remind_at: Mapped[datetime | None]
    reminded_at: Mapped[datetime | None]
    # The occurrence whose completion created this one (a plain id: it may be deleted since).
    previous_occurrence_id: Mapped[uuid.UUID | None]

    tag_rows: Mapped[list[TaskTag]] = relationship(
        lazy="selectin",
        cascade="all, delete-orphan",
        order_by="TaskTag.tag",
        passive_deletes=True,
    )

    @property
    def priority(self) -> Priority:
        """The priority by name."""
        return Priority.from_rank(self.priority_rank)

    @property
    def tags(self) -> list[str]:
        """The task's tags, in alphabetical order."""
        return sorted(row.tag for row in self.tag_rows)


class TaskTag(Base):
    """One tag of one task.

    A value rather than an entity (never addressed on its own), so it is keyed by (task, tag)
    instead of carrying an id and timestamps. `user_id` repeats the task's owner so that a tag
    filter is answered from the (user_id, tag) index without touching other users' rows.
    """

    __tablename__ = "task_tags"
    __table_args__ = (Index("ix_task_tags_user_id_tag_task_id", "user_id", "tag", "task_id"),)

    task_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    tag: Mapped[str] = mapped_column(String(TAG_MAX_CHARS), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
