"""Queries over tasks and their tags. Never commits.

Every read starts from `readable(owner_id)`: there is no unscoped way to reach a task. The filters
and sorts a list accepts are named here (`TaskFilters`, `TaskSort`) and nothing else reaches SQL.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ColumnElement, Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.core.db import LIKE_ESCAPE, contains_pattern
from parley.core.pagination import CursorCodec, SortKey, paginate
from parley.tasks.models import Priority, Task, TaskTag


class TaskSort(StrEnum):
    """The orders a task list may be read in; a leading `-` means descending."""

    CREATED_AT = "created_at"
    CREATED_AT_DESC = "-created_at"
    DUE_AT = "due_at"
    DUE_AT_DESC = "-due_at"
    PRIORITY = "priority"
    PRIORITY_DESC = "-priority"


SORT_KEYS: dict[TaskSort, SortKey] = {
    TaskSort.CREATED_AT: SortKey("created_at", Task.created_at, descending=False),
    TaskSort.CREATED_AT_DESC: SortKey("-created_at", Task.created_at, descending=True),
    # Tasks without a due date come last in both directions.
    TaskSort.DUE_AT: SortKey("due_at", Task.due_at, descending=False, nullable=True),
    TaskSort.DUE_AT_DESC: SortKey("-due_at", Task.due_at, descending=True, nullable=True),
    TaskSort.PRIORITY: SortKey("priority", Task.priority_rank, descending=False, kind="int"),
    TaskSort.PRIORITY_DESC: SortKey("-priority", Task.priority_rank, descending=True, kind="int"),
}


@dataclass(frozen=True, slots=True)
class TaskFilters:
    """What a task list may be narrowed by; `None` means "any".

    Attributes:
        completed: done or not.
        priority: exactly this priority.
        tag: carries this tag (exact match).
        due_before: due strictly before this time (tasks without a due date never match).
        due_after: due strictly after this time (likewise).
        q: text found in the title or the description, ignoring case.
    """

    completed: bool | None = None
    priority: Priority | None = None
    tag: str | None = None
    due_before: datetime | None = None
    due_after: datetime | None = None
    q: str | None = None


def readable(owner_id: uuid.UUID) -> Select[Task]:
    """The owner's tasks: the start of every task read."""
    return select(Task).where(Task.user_id == owner_id)


def _conditions(owner_id: uuid.UUID, filters: TaskFilters) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.completed is not None:
        conditions.append(Task.completed == filters.completed)
    if filters.priority is not None:
        conditions.append(Task.priority_rank == filters.priority.rank)
    if filters.tag is not None:
        tagged = select(TaskTag.task_id).where(
            TaskTag.user_id == owner_id, TaskTag.tag == filters.tag
        )
        conditions.append(Task.id.in_(tagged))
    if filters.due_before is not None:
        conditions.append(Task.due_at < filters.due_before)
    if filters.due_after is not None:
        conditions.append(Task.due_at > filters.due_after)
    if filters.q:
        pattern = contains_pattern(filters.q.lower())
        conditions.append(
            or_(
                func.lower(Task.title).like(pattern, escape=LIKE_ESCAPE),
                func.lower(Task.description).like(pattern, escape=LIKE_ESCAPE),
            )
        )
    return conditions


async def list_tasks(
    session: AsyncSession,
    owner_id: uuid.UUID,
    *,
    filters: TaskFilters,
    sort: TaskSort,
    codec: CursorCodec,
    cursor: str | None,
    limit: int,
) -> tuple[list[Task], str | None]:
    """A page of the owner's tasks matching `filters`, in `sort` order."""
    statement, finish = paginate(
        readable(owner_id).where(*_conditions(owner_id, filters)),
        sort=SORT_KEYS[sort],
        id_column=Task.id,
        cursor=cursor,
        limit=limit,
        codec=codec,
    )
    rows: Sequence[Task] = (await session.execute(statement)).scalars().all()
    return finish(rows)


async def get_task(session: AsyncSession, owner_id: uuid.UUID, task_id: uuid.UUID) -> Task | None:
    """One of the owner's tasks, or None (also when it is someone else's)."""
    result = await session.execute(readable(owner_id).where(Task.id == task_id))
    return result.scalar_one_or_none()


def add_task(session: AsyncSession, task: Task, tags: Sequence[str]) -> Task:
    """Add a new task with its tags (flushed with the session)."""
    task.tag_rows = [TaskTag(tag=tag, user_id=task.user_id) for tag in tags]
    session.add(task)
    return task


def replace_tags(task: Task, tags: Sequence[str]) -> None:
    """Make `tags` the task's tags: rows for kept tags stay, the others go or are added."""
    wanted = list(dict.fromkeys(tags))
    kept = [row for row in task.tag_rows if row.tag in wanted]
    present = {row.tag for row in kept}
    task.tag_rows = kept + [
        TaskTag(tag=tag, user_id=task.user_id) for tag in wanted if tag not in present
    ]


async def delete_task(session: AsyncSession, task: Task) -> None:
    """Delete a task and its tags (flushed with the session)."""
    await session.delete(task)
