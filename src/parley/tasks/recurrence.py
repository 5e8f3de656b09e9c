"""Recurring tasks: a task's `recurrence` is an RFC 5545 RRULE (`FREQ=WEEKLY;BYDAY=MO`), read
by python-dateutil, and completing the task creates its next occurrence.

The next occurrence is made by a consumer of `parley.task.completed.v1` (`recurrence_consumer`),
in one transaction with its `handled_events` row, and the new task records the occurrence it
follows (`previous_occurrence_id`, unique): a redelivered event, or the same task completed,
reopened and completed again, makes one next occurrence.

When is the next one due: the rule is anchored at the task's due time (or, if it has none, when
it was completed), and the next occurrence is its first one after both the due time and the
completion: a weekly task done early is next due a week after its due date, one done three weeks
late is next due at the next slot from now (missed ones are not made). A reminder keeps its
distance from the due time. Rules are evaluated in UTC.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.events.consumers import Consumer, ReceivedEvent
from parley.tasks import repository
from parley.tasks.events import TASK_COMPLETED
from parley.tasks.models import Task
from parley.tasks.rules import next_due
from parley.tasks.service import TaskService


def recurrence_consumer() -> Consumer:
    """The consumer that creates a completed recurring task's next occurrence."""

    async def handle(session: AsyncSession, event: ReceivedEvent) -> None:
        if event.parleyuser is None:
            return
        try:
            task_id = uuid.UUID(str(event.data.get("id")))
        except ValueError:
            return
        # The task as it is now, not as the event says: it may have been reopened, changed or
        # deleted since, and an event's content is not trusted to create anything.
        task = await repository.get_task(session, event.parleyuser, task_id)
        if task is None or not task.completed or task.recurrence is None:
            return
        exists = await session.scalar(
            select(Task.id).where(Task.previous_occurrence_id == task.id).limit(1)
        )
        if exists is not None:
            return
        due = next_due(task)
        if due is None:
            return
        remind_at = None
        if task.remind_at is not None:
            remind_at = due - ((task.due_at or task.completed_at or due) - task.remind_at)
        await TaskService(session, commit=False).create_next_occurrence(
            task, due_at=due, remind_at=remind_at
        )

    return Consumer("tasks.recurrence", frozenset({TASK_COMPLETED}), handle)
