"""The jobs' admin API models (CONTRACT.md section 10)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, StringConstraints

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
KindFilter = Annotated[
    str, StringConstraints(min_length=1, max_length=100, pattern=r"^[a-z0-9_.]+$")
]


class JobPublic(BaseModel):
    """A job as admins see it."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    kind: str
    queue: str
    status: JobStatus
    attempts: int
    max_attempts: int
    run_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    progress: float
    error: str | None
