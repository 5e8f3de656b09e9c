"""The task tools (CONTRACT.md section 4): `add_task`, `list_tasks`, `get_task`, `update_task`,
`complete_task` and `delete_task`, for the in-chat assistant and MCP clients alike.

Each is thin over `TaskService`: it opens its own short session, acts as the calling user, and
answers tasks shaped exactly as the REST API does. Another user's task is "not found" here too.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from parley.core.pagination import DEFAULT_LIMIT, MAX_LIMIT
from parley.core.responses import Page
from parley.core.validation import RequestModel, UtcDatetime
from parley.tasks.models import Priority
from parley.tasks.schemas import SearchText, Tag, TaskCreate, TaskPublic, TaskUpdate
from parley.tasks.service import TaskFilters, TaskService, TaskSort
from parley.tools.registry import ToolContext, ToolDefinition

TaskId = Annotated[
    uuid.UUID, Field(description="The task's id, as returned by add_task or list_tasks.")
]


class AddTaskArgs(TaskCreate):
    """Arguments of `add_task`."""


class ListTasksArgs(RequestModel):
    """Arguments of `list_tasks`; every filter is optional."""

    completed: bool | None = Field(default=None, description="Only done (true) or open (false).")
    priority: Priority | None = Field(default=None, description="Only this priority.")
    tag: Tag | None = Field(default=None, description="Only tasks with this tag (exact).")
    due_before: UtcDatetime | None = Field(
        default=None, description="Only tasks due strictly before this time (RFC 3339, with zone)."
    )
    due_after: UtcDatetime | None = Field(
        default=None, description="Only tasks due strictly after this time (RFC 3339, with zone)."
    )
    q: SearchText | None = Field(
        default=None, description="Only tasks whose title or description contains this text."
    )
    sort: TaskSort = Field(
        default=TaskSort.CREATED_AT_DESC,
        description="Order: created_at, due_at or priority; a leading '-' reverses it.",
    )
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description="Tasks per page.")
    cursor: str | None = Field(
        default=None, max_length=1024, description="next_cursor of the previous page."
    )


class TaskIdArgs(RequestModel):
    """Arguments naming one task."""

    task_id: TaskId


class UpdateTaskArgs(TaskUpdate):
    """Arguments of `update_task`: the task, and only the fields to change."""

    task_id: TaskId


class CompleteTaskArgs(TaskIdArgs):
    """Arguments of `complete_task`."""

    completed: bool = Field(default=True, description="false marks the task as not done again.")


class DeletedTask(BaseModel):
    """The answer of `delete_task`."""

    id: uuid.UUID
    deleted: Literal[True] = True


async def add_task(context: ToolContext, args: AddTaskArgs) -> TaskPublic:
    """Create a task for the calling user."""
    async with context.session() as session:
        task = await TaskService(session, context.cursor_codec).create(
            context.user,
            title=args.title,
            description=args.description,
            priority=args.priority,
            due_at=args.due_at,
            tags=args.tags,
            completed=args.completed,
            recurrence=args.recurrence,
            remind_at=args.remind_at,
        )
        return TaskPublic.model_validate(task)


async def list_tasks(context: ToolContext, args: ListTasksArgs) -> Page[TaskPublic]:
    """A page of the calling user's tasks."""
    filters = TaskFilters(
        completed=args.completed,
        priority=args.priority,
        tag=args.tag,
        due_before=args.due_before,
        due_after=args.due_after,
        q=args.q,
    )
    async with context.session() as session:
        items, next_cursor = await TaskService(session, context.cursor_codec).list(
            context.user, filters=filters, sort=args.sort, cursor=args.cursor, limit=args.limit
        )
        return Page(
            items=[TaskPublic.model_validate(task) for task in items], next_cursor=next_cursor
        )


async def get_task(context: ToolContext, args: TaskIdArgs) -> TaskPublic:
    """One of the calling user's tasks."""
    async with context.session() as session:
        task = await TaskService(session, context.cursor_codec).get(context.user, args.task_id)
        return TaskPublic.model_validate(task)


async def update_task(context: ToolContext, args: UpdateTaskArgs) -> TaskPublic:
    """Change the fields given of one of the calling user's tasks."""
    async with context.session() as session:
        task = await TaskService(session, context.cursor_codec).update(
            context.user, args.task_id, args.changes()
        )
        return TaskPublic.model_validate(task)


async def complete_task(context: ToolContext, args: CompleteTaskArgs) -> TaskPublic:
    """Mark one of the calling user's tasks done or not done."""
    async with context.session() as session:
        task = await TaskService(session, context.cursor_codec).set_completed(
            context.user, args.task_id, completed=args.completed
        )
        return TaskPublic.model_validate(task)


async def delete_task(context: ToolContext, args: TaskIdArgs) -> DeletedTask:
    """Delete one of the calling user's tasks."""
    async with context.session() as session:
        await TaskService(session, context.cursor_codec).delete(context.user, args.task_id)
    return DeletedTask(id=args.task_id)


TASK_TOOLS: tuple[ToolDefinition[Any], ...] = (
    ToolDefinition(
        name="add_task",
        description=(
            "Add a task to the user's todo list. Only the title is required; priority defaults "
            "to medium. A repeating task has a `recurrence` (an RFC 5545 RRULE: 'every Monday' "
            "is FREQ=WEEKLY;BYDAY=MO, 'every day' FREQ=DAILY, 'on the 1st of each month' "
            "FREQ=MONTHLY;BYMONTHDAY=1), usually with a `due_at` for its first time; completing "
            "it creates the next occurrence. `remind_at` sends the user a reminder at that "
            "time. Returns the new task."
        ),
        arguments=AddTaskArgs,
        function=add_task,
        result=TaskPublic,
    ),
    ToolDefinition(
        name="list_tasks",
        description=(
            "List the user's tasks, newest first unless `sort` says otherwise, optionally "
            "filtered by completed, priority, tag, due date range or text. Returns `items` and "
            "a `next_cursor` to pass back as `cursor` for the next page (null on the last)."
        ),
        arguments=ListTasksArgs,
        function=list_tasks,
        result=Page[TaskPublic],
        read_only=True,
        idempotent=True,
    ),
    ToolDefinition(
        name="get_task",
        description="Get one of the user's tasks by its id.",
        arguments=TaskIdArgs,
        function=get_task,
        result=TaskPublic,
        read_only=True,
        idempotent=True,
    ),
    ToolDefinition(
        name="update_task",
        description=(
            "Change a task: only the fields given change. `description`, `due_at`, "
            "`recurrence` and `remind_at` may be null to clear them; `tags` replaces all of the "
            "task's tags. Returns the task."
        ),
        arguments=UpdateTaskArgs,
        function=update_task,
        result=TaskPublic,
        destructive=True,
        idempotent=True,
    ),
    ToolDefinition(
        name="complete_task",
        description=(
            "Mark a task as done (or, with completed=false, as not done). Completing a "
            "repeating task creates its next occurrence. Returns the task."
        ),
        arguments=CompleteTaskArgs,
        function=complete_task,
        result=TaskPublic,
        idempotent=True,
    ),
    ToolDefinition(
        name="delete_task",
        description="Delete one of the user's tasks for good.",
        arguments=TaskIdArgs,
        function=delete_task,
        result=DeletedTask,
        destructive=True,
        idempotent=False,
    ),
)
