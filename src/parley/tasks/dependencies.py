"""The task service for a route, and the parsed filters and sort order of a task list."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from parley.core.dependencies import SessionDep, cursor_codec_of
from parley.core.validation import UtcDatetime
from parley.tasks.models import Priority
from parley.tasks.schemas import SearchText, Tag
from parley.tasks.service import TaskFilters, TaskService, TaskSort


async def get_task_service(request: Request, session: SessionDep) -> TaskService:
    """Task use cases over the route's session."""
    return TaskService(session, cursor_codec_of(request))


TaskServiceDep = Annotated[TaskService, Depends(get_task_service)]


@dataclass(frozen=True, slots=True)
class TaskListQuery:
    """The filters and the order of a task list request."""

    filters: TaskFilters
    sort: TaskSort


async def get_task_list_query(
    completed: Annotated[
        bool | None, Query(description="Only done (true) or open (false).")
    ] = None,
    priority: Annotated[Priority | None, Query(description="Only this priority.")] = None,
    tag: Annotated[Tag | None, Query(description="Only tasks with this tag (exact).")] = None,
    due_before: Annotated[
        UtcDatetime | None, Query(description="Only tasks due strictly before this time.")
    ] = None,
    due_after: Annotated[
        UtcDatetime | None, Query(description="Only tasks due strictly after this time.")
    ] = None,
    q: Annotated[
        SearchText | None,
        Query(description="Only tasks whose title or description contains this, ignoring case."),
    ] = None,
    sort: Annotated[
        TaskSort,
        Query(
            description="Order: `created_at`, `due_at` or `priority`; a leading `-` reverses it. "
            "Tasks without a due date come last either way."
        ),
    ] = TaskSort.CREATED_AT_DESC,
) -> TaskListQuery:
    """The allow-listed filters and sort of a task list; anything else in them is a 422."""
    return TaskListQuery(
        filters=TaskFilters(
            completed=completed,
            priority=priority,
            tag=tag,
            due_before=due_before,
            due_after=due_after,
            q=q,
        ),
        sort=sort,
    )


TaskListQueryDep = Annotated[TaskListQuery, Depends(get_task_list_query)]
