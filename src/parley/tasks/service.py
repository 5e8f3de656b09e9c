"""Task use cases: create, read, list, change, complete and delete a user's tasks.

Each public method is one use case and commits once at its end, with its event in the outbox
(`parley.task.created.v1`, `.updated.v1`, `.completed.v1`, `.deleted.v1`: the task is the data).
A task that is not the caller's is `NotFound`, exactly like one that does not exist. REST routes
and assistant/MCP tools both act through this service, so the rules hold on every surface.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from parley.accounts.authentication import Owner
from parley.core.db import new_id, utcnow
from parley.core.errors import NotFound
from parley.core.pagination import CursorCodec
from parley.core.telemetry import traced
from parley.events.outbox import add_row_event
from parley.tasks import repository
from parley.tasks.events import TASK_COMPLETED, TASK_CREATED, TASK_DELETED, TASK_UPDATED
from parley.tasks.models import Priority, Task
from parley.tasks.reminders import schedule_reminder
from parley.tasks.repository import TaskFilters, TaskSort
from parley.tasks.schemas import TaskChanges, TaskPublic

__all__ = ["TaskChanges", "TaskFilters", "TaskService", "TaskSort"]


class TaskService:
    """A user's tasks, over one database session.

    Args:
        codec: the cursor codec (for `list`).
        commit: whether each use case commits (False for a consumer, whose transaction
            also holds its `handled_events` row).
    """

    def __init__(
        self, session: AsyncSession, codec: CursorCodec | None = None, *, commit: bool = True
    ) -> None:
        self.session = session
        self.codec = codec
        self.commit = commit

    async def _commit(self) -> None:
        if self.commit:
            await self.session.commit()
        else:
            await self.session.flush()

    async def _tell(self, event_type: str, task: Task) -> None:
        await add_row_event(
            self.session,
            event_type,
            task,
            collection="tasks",
            view=TaskPublic,
            user_id=task.user_id,
        )

    async def _owned(self, owner: Owner, task_id: uuid.UUID) -> Task:
        task = await repository.get_task(self.session, owner.id, task_id)
        if task is None:
            raise NotFound("No such task.")
        return task

    @traced(name="tasks.create", skip_input=True)
    async def create(
        self,
        owner: Owner,
        *,
        title: str,
        description: str | None = None,
        priority: Priority = Priority.MEDIUM,
        due_at: datetime | None = None,
        tags: Sequence[str] = (),
        completed: bool = False,
        recurrence: str | None = None,
        remind_at: datetime | None = None,
    ) -> Task:
        """A new task on the owner's list (its reminder queued if it has one)."""
        return await self._add(
            owner.id,
            title=title,
            description=description,
            priority=priority,
            due_at=due_at,
            tags=tags,
            completed=completed,
            recurrence=recurrence,
            remind_at=remind_at,
        )

    async def _add(
        self,
        user_id: uuid.UUID,
        *,
        title: str,
        description: str | None,
        priority: Priority,
        due_at: datetime | None,
        tags: Sequence[str],
        completed: bool,
        recurrence: str | None,
        remind_at: datetime | None,
        previous_occurrence_id: uuid.UUID | None = None,
    ) -> Task:
        now = utcnow()
        task = Task(
            id=new_id(),
            user_id=user_id,
            title=title,
            description=description,
            priority_rank=priority.rank,
            due_at=due_at,
            completed=completed,
            completed_at=now if completed else None,
            recurrence=recurrence,
            remind_at=remind_at,
            previous_occurrence_id=previous_occurrence_id,
            created_at=now,
            updated_at=now,
        )
        repository.add_task(self.session, task, list(dict.fromkeys(tags)))
        await self._tell(TASK_CREATED, task)
        await schedule_reminder(self.session, task)
        await self._commit()
        return task

    @traced(name="tasks.create_next_occurrence", skip_input=True)
    async def create_next_occurrence(
        self, previous: Task, *, due_at: datetime, remind_at: datetime | None
    ) -> Task:
        """The occurrence after the completed recurring task `previous`: a copy of it, open,
        due at `due_at` (see `parley.tasks.recurrence`)."""
        return await self._add(
            previous.user_id,
            title=previous.title,
            description=previous.description,
            priority=previous.priority,
            due_at=due_at,
            tags=previous.tags,
            completed=False,
            recurrence=previous.recurrence,
            remind_at=remind_at,
            previous_occurrence_id=previous.id,
        )

    @traced(name="tasks.get")
    async def get(self, owner: Owner, task_id: uuid.UUID) -> Task:
        """One of the owner's tasks.

        Raises:
            NotFound: no such task, or not the owner's.
        """
        return await self._owned(owner, task_id)

    @traced(name="tasks.list")
    async def list(
        self,
        owner: Owner,
        *,
        filters: TaskFilters,
        sort: TaskSort = TaskSort.CREATED_AT_DESC,
        cursor: str | None = None,
        limit: int,
    ) -> tuple[list[Task], str | None]:
        """A page of the owner's tasks.

        Raises:
            ValidationFailed: the cursor is invalid or belongs to another sort order.
        """
        if self.codec is None:
            raise RuntimeError("TaskService.list needs a cursor codec")
        return await repository.list_tasks(
            self.session,
            owner.id,
            filters=filters,
            sort=sort,
            codec=self.codec,
            cursor=cursor,
            limit=limit,
        )

    @traced(name="tasks.update", skip_input=True)
    async def update(self, owner: Owner, task_id: uuid.UUID, changes: TaskChanges) -> Task:
        """Change the fields named in `changes` and leave the others.

        Marking a task completed records when (once: completing it again keeps the first time);
        marking it not completed clears that time.

        Raises:
            NotFound: no such task, or not the owner's.
        """
        task = await self._owned(owner, task_id)
        if not changes:
            return task
        if "title" in changes:
            task.title = changes["title"]
        if "description" in changes:
            task.description = changes["description"]
        if "priority" in changes:
            task.priority_rank = changes["priority"].rank
        if "due_at" in changes:
            task.due_at = changes["due_at"]
        if "tags" in changes:
            repository.replace_tags(task, changes["tags"])
        if "recurrence" in changes:
            task.recurrence = changes["recurrence"]
        reminder_moved = "remind_at" in changes and changes["remind_at"] != task.remind_at
        if reminder_moved:
            task.remind_at = changes["remind_at"]
            task.reminded_at = None
        completes = changes.get("completed") is True and not task.completed
        if "completed" in changes:
            self._mark(task, completed=changes["completed"])
        # Set explicitly: a change of tags alone does not update the task's own row.
        task.updated_at = utcnow()
        await self._tell(TASK_COMPLETED if completes else TASK_UPDATED, task)
        if reminder_moved:
            await schedule_reminder(self.session, task)
        await self._commit()
        return task

    @traced(name="tasks.set_completed")
    async def set_completed(self, owner: Owner, task_id: uuid.UUID, *, completed: bool) -> Task:
        """Mark a task done (or not done again).

        Raises:
            NotFound: no such task, or not the owner's.
        """
        return await self.update(owner, task_id, {"completed": completed})

    @traced(name="tasks.delete")
    async def delete(self, owner: Owner, task_id: uuid.UUID) -> None:
        """Delete one of the owner's tasks for good.

        Raises:
            NotFound: no such task, or not the owner's.
        """
        task = await self._owned(owner, task_id)
        await self._tell(TASK_DELETED, task)
        await repository.delete_task(self.session, task)
        await self._commit()

    @staticmethod
    def _mark(task: Task, *, completed: bool) -> None:
        if completed and not task.completed:
            task.completed_at = utcnow()
        elif not completed:
            task.completed_at = None
        task.completed = completed
