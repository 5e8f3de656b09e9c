"""Reminders: at a task's `remind_at`, a durable job (`tasks.remind`, queued with the change that
set the time, to run at it) publishes `parley.reminder.due.v1`, which the live feed carries to
the web page as a notification.

The job is keyed by (task, time), so setting the same time again queues nothing new; when it
runs, it reminds only if the task still has that `remind_at`, is not done and has not been
reminded of it (`reminded_at`, cleared when `remind_at` changes), all in the transaction that
writes the event: a job that runs twice reminds once, a moved reminder fires at its new time
only, and a deleted task's job finds nothing.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.core.db import Database, utcnow
from parley.events.outbox import add_event
from parley.events.types import EventType
from parley.jobs.kinds import JobKind, JobRun
from parley.jobs.queue import enqueue
from parley.tasks.models import Task
from parley.tasks.schemas import TaskPublic

REMINDER_DUE = "parley.reminder.due.v1"
REMIND_JOB = JobKind("tasks.remind", priority=30, max_attempts=5, timeout_seconds=60)


class ReminderDue(BaseModel):
    """The data of `parley.reminder.due.v1`."""

    task: TaskPublic = Field(description="The task, as it is when the reminder fires.")
    remind_at: datetime = Field(description="The reminder's time (RFC 3339).")


REMINDER_EVENTS: tuple[EventType, ...] = (
    EventType(
        REMINDER_DUE,
        ReminderDue,
        "A task's reminder time has come; subject `tasks/<id>`, `data` the task and the time.",
    ),
)


async def schedule_reminder(session: AsyncSession, task: Task) -> None:
    """Queue the job of the task's `remind_at` in the caller's transaction (no-op without one)."""
    if task.remind_at is None:
        return
    await enqueue(
        session,
        REMIND_JOB,
        {"task_id": str(task.id), "remind_at": task.remind_at.isoformat()},
        run_at=task.remind_at,
        idempotency_key=f"tasks.remind:{task.id}:{task.remind_at.isoformat()}",
    )


class Reminders:
    """The handler of `tasks.remind` jobs."""

    def __init__(self, database: Database) -> None:
        self.database = database

    async def run(self, job: JobRun) -> None:
        task_id = uuid.UUID(str(job.args["task_id"]))
        remind_at = datetime.fromisoformat(str(job.args["remind_at"]))
        async with self.database.sessionmaker() as session:
            statement = select(Task).where(Task.id == task_id)
            if session.get_bind().dialect.name == "postgresql":
                statement = statement.with_for_update()
            task = await session.scalar(statement)
            if (
                task is None
                or task.completed
                or task.remind_at != remind_at
                or task.reminded_at is not None
            ):
                return
            task.reminded_at = utcnow()
            await add_event(
                session,
                REMINDER_DUE,
                subject=f"tasks/{task.id}",
                user_id=task.user_id,
                data=ReminderDue(
                    task=TaskPublic.model_validate(task), remind_at=remind_at
                ).model_dump(mode="json"),
            )
            await session.commit()
