"""The job tables: `jobs`, one row per unit of background work, and `job_schedules`, the last slot
each periodic schedule fired for (so that it fires once per slot however many workers run)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Index, SmallInteger, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from parley.core.db import Base, IdTimestampMixin

# Where a job is in its life. `queued` and `running` are live; the other three are final (a final
# job is taken again only by an admin's retry).
QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED = (
    "queued",
    "running",
    "succeeded",
    "failed",
    "cancelled",
)
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINAL_STATUSES = (SUCCEEDED, FAILED, CANCELLED)


class Job(IdTimestampMixin, Base):
    """One job: what to run (`kind`, `args`), where and when (`queue`, `priority`, `run_at`), and
    how it went (`status`, `attempts`, `progress`, `error`).

    A worker takes a job by setting it `running` with its own name in `worker` and a lease
    (`lease_expires_at`) that it renews while the job runs; a job whose lease expired is taken
    again. `trace_context` is the W3C trace context of the request that enqueued it.
    """

    __tablename__ = "jobs"
    __table_args__ = (
        # The claim: due jobs of a queue, highest priority first, then oldest.
        Index(
            "ix_jobs_due",
            "queue",
            text("priority DESC"),
            "run_at",
            postgresql_where=text("status = 'queued'"),
            sqlite_where=text("status = 'queued'"),
        ),
        # Leases to check for expiry.
        Index(
            "ix_jobs_leases",
            "lease_expires_at",
            postgresql_where=text("status = 'running'"),
            sqlite_where=text("status = 'running'"),
        ),
        # The admin list's filters, newest first (ids are time-ordered).
        Index("ix_jobs_status_id", "status", "id"),
        Index("ix_jobs_kind_id", "kind", "id"),
        # The purge of old final jobs.
        Index("ix_jobs_finished_at", "finished_at"),
    )

    kind: Mapped[str] = mapped_column(String(100))
    queue: Mapped[str] = mapped_column(String(50))
    priority: Mapped[int] = mapped_column(SmallInteger, default=0)
    status: Mapped[str] = mapped_column(String(10))
    args: Mapped[dict[str, Any]] = mapped_column(JSON)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    attempts: Mapped[int] = mapped_column(default=0)
    max_attempts: Mapped[int]
    run_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    lease_expires_at: Mapped[datetime | None]
    worker: Mapped[str | None] = mapped_column(String(100))
    progress: Mapped[float] = mapped_column(default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    trace_context: Mapped[dict[str, str] | None] = mapped_column(JSON)


class JobSchedule(IdTimestampMixin, Base):
    """A periodic schedule's last slot: the worker that moves it forward enqueues that slot's job
    in the same transaction, so one job is enqueued per slot."""

    __tablename__ = "job_schedules"

    name: Mapped[str] = mapped_column(String(100), unique=True)
    last_slot_at: Mapped[datetime]
