"""The background jobs, for admins (CONTRACT.md section 10): `GET /api/admin/jobs`,
`POST /api/admin/jobs/{job_id}/retry`, `POST /api/admin/jobs/{job_id}/cancel`. Everyone else gets
403."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from parley.accounts.dependencies import AdminUser
from parley.core.dependencies import PageDep
from parley.core.errors import Conflict, Forbidden, InvalidToken, NotAuthenticated, NotFound
from parley.core.responses import Envelope, Page, error_responses, ok
from parley.jobs.dependencies import JobServiceDep
from parley.jobs.schemas import JobPublic, JobStatus, KindFilter

admin_jobs_router = APIRouter(prefix="/api/admin/jobs", tags=["admin"])


@admin_jobs_router.get(
    "",
    summary="List jobs",
    responses=error_responses(NotAuthenticated, InvalidToken, Forbidden),
)
async def list_jobs(
    admin: AdminUser,
    jobs: JobServiceDep,
    page: PageDep,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this state.")] = None,
    kind: Annotated[KindFilter | None, Query(description="Only jobs of this kind.")] = None,
) -> Envelope[Page[JobPublic]]:
    """Every background job, newest first."""
    items, next_cursor = await jobs.list_jobs(
        status=status, kind=kind, cursor=page.cursor, limit=page.limit
    )
    return ok(Page(items=[JobPublic.model_validate(job) for job in items], next_cursor=next_cursor))


@admin_jobs_router.post(
    "/{job_id}/retry",
    summary="Retry a job",
    responses=error_responses(NotAuthenticated, InvalidToken, Forbidden, NotFound, Conflict),
)
async def retry_job(
    job_id: uuid.UUID, admin: AdminUser, jobs: JobServiceDep
) -> Envelope[JobPublic]:
    """Queue a failed or cancelled job again, due now, with all its attempts (409 otherwise)."""
    return ok(JobPublic.model_validate(await jobs.retry(job_id)))


@admin_jobs_router.post(
    "/{job_id}/cancel",
    summary="Cancel a job",
    responses=error_responses(NotAuthenticated, InvalidToken, Forbidden, NotFound, Conflict),
)
async def cancel_job(
    job_id: uuid.UUID, admin: AdminUser, jobs: JobServiceDep
) -> Envelope[JobPublic]:
    """Cancel a queued job, or stop a running one (409 once it has ended)."""
    return ok(JobPublic.model_validate(await jobs.cancel(job_id)))
