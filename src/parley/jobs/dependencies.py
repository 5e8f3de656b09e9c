"""`JobServiceDep`: the admins' job use cases over the route's session."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from parley.core.dependencies import SessionDep, cursor_codec_of
from parley.jobs.service import JobService


async def get_job_service(request: Request, session: SessionDep) -> JobService:
    """The job use cases over the route's session."""
    return JobService(session, cursor_codec_of(request))


JobServiceDep = Annotated[JobService, Depends(get_job_service)]
