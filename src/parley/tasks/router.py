"""Tasks over HTTP (CONTRACT.md section 4). Every route acts on the caller's own tasks; another
user's task is a 404 like a missing one.

- `POST /api/tasks` — create a task
- `GET /api/tasks` — list, with `completed`, `priority`, `tag`, `due_before`, `due_after`, `q`,
  `sort` and cursor paging
- `GET /api/tasks/{task_id}` — one task
- `PATCH /api/tasks/{task_id}` — change the fields sent
- `DELETE /api/tasks/{task_id}` — delete a task
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Response, status

from parley.accounts.dependencies import CurrentUser
from parley.core.dependencies import PageDep
from parley.core.errors import InvalidToken, NotAuthenticated, NotFound
from parley.core.responses import Envelope, Page, error_responses, ok
from parley.tasks.dependencies import TaskListQueryDep, TaskServiceDep
from parley.tasks.schemas import TaskCreate, TaskPublic, TaskUpdate

tasks_router = APIRouter(prefix="/api/tasks", tags=["tasks"])

_AUTH_ERRORS = (NotAuthenticated, InvalidToken)


@tasks_router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a task",
    response_model=Envelope[TaskPublic],
    responses=error_responses(*_AUTH_ERRORS),
)
async def create_task(
    body: TaskCreate, user: CurrentUser, tasks: TaskServiceDep
) -> Envelope[TaskPublic]:
    """Add a task to the caller's list. Priority defaults to `medium`."""
    task = await tasks.create(
        user,
        title=body.title,
        description=body.description,
        priority=body.priority,
        due_at=body.due_at,
        tags=body.tags,
        completed=body.completed,
        recurrence=body.recurrence,
        remind_at=body.remind_at,
    )
    return ok(TaskPublic.model_validate(task))


@tasks_router.get(
    "",
    summary="List tasks",
    response_model=Envelope[Page[TaskPublic]],
    responses=error_responses(*_AUTH_ERRORS),
)
async def list_tasks(
    user: CurrentUser, tasks: TaskServiceDep, query: TaskListQueryDep, page: PageDep
) -> Envelope[Page[TaskPublic]]:
    """The caller's tasks, newest first unless `sort` says otherwise, filtered as asked."""
    items, next_cursor = await tasks.list(
        user, filters=query.filters, sort=query.sort, cursor=page.cursor, limit=page.limit
    )
    return ok(
        Page(items=[TaskPublic.model_validate(task) for task in items], next_cursor=next_cursor)
    )


@tasks_router.get(
    "/{task_id}",
    summary="Get a task",
    response_model=Envelope[TaskPublic],
    responses=error_responses(*_AUTH_ERRORS, NotFound),
)
async def get_task(
    task_id: uuid.UUID, user: CurrentUser, tasks: TaskServiceDep
) -> Envelope[TaskPublic]:
    """One of the caller's tasks."""
    task = await tasks.get(user, task_id)
    return ok(TaskPublic.model_validate(task))


@tasks_router.patch(
    "/{task_id}",
    summary="Update a task",
    response_model=Envelope[TaskPublic],
    responses=error_responses(*_AUTH_ERRORS, NotFound),
)
async def update_task(
    task_id: uuid.UUID, body: TaskUpdate, user: CurrentUser, tasks: TaskServiceDep
) -> Envelope[TaskPublic]:
    """Change only the fields sent. `completed: true` records `completed_at`, `false` clears it;
    `description` and `due_at` may be null to clear them; `tags` replaces every tag."""
    task = await tasks.update(user, task_id, body.changes())
    return ok(TaskPublic.model_validate(task))


@tasks_router.delete(
    "/{task_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a task",
    response_class=Response,
    responses=error_responses(*_AUTH_ERRORS, NotFound),
)
async def delete_task(task_id: uuid.UUID, user: CurrentUser, tasks: TaskServiceDep) -> Response:
    """Delete one of the caller's tasks for good."""
    await tasks.delete(user, task_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
