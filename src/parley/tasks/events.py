"""The events the tasks publish (see docs/events.md): their types, and the model of their data,
the task as clients see it."""

from __future__ import annotations

from parley.events.types import EventType
from parley.tasks.schemas import TaskPublic

TASK_CREATED = "parley.task.created.v1"
TASK_UPDATED = "parley.task.updated.v1"
TASK_COMPLETED = "parley.task.completed.v1"
TASK_DELETED = "parley.task.deleted.v1"

TASK_EVENTS: tuple[EventType, ...] = (
    EventType(TASK_CREATED, TaskPublic, "A task was created; `data` is the task."),
    EventType(
        TASK_UPDATED,
        TaskPublic,
        "A task was changed, or marked not completed again; `data` is the task after it.",
    ),
    EventType(TASK_COMPLETED, TaskPublic, "A task was marked completed; `data` is the task."),
    EventType(TASK_DELETED, TaskPublic, "A task was deleted; `data` is the task as it was."),
)
