"""Fixtures of the job tests: the test database's `Database`, and workers started inside a test
(the session's app runs none, see `tests.fixtures.settings`) and stopped at its end."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fastapi import FastAPI

from parley.core.db import Database
from parley.jobs.kinds import JobKinds
from parley.jobs.worker import Worker

WorkerFactory = Callable[..., Worker]


@pytest.fixture
def database(app: FastAPI) -> Database:
    db: Database = app.state.database
    return db


@pytest.fixture
async def start_worker(database: Database) -> AsyncIterator[WorkerFactory]:
    """`start_worker(kinds, **options)`: a started `Worker` on the test database (fast poll,
    short lease unless given), stopped at the end of the test."""
    workers: list[Worker] = []

    def factory(kinds: JobKinds, **options: Any) -> Worker:
        options.setdefault("poll_seconds", 0.1)
        options.setdefault("lease_seconds", 30.0)
        options.setdefault("shutdown_seconds", 5.0)
        worker = Worker(database, kinds, **options)
        worker.start()
        workers.append(worker)
        return worker

    yield factory
    for worker in workers:
        await worker.stop(grace_seconds=0)
