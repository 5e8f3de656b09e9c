"""The jobs' admin API (CONTRACT.md section 10): admins list jobs by status and kind, cancel a
queued or running one (a running one's worker stops it), retry a failed or cancelled one; anyone
else gets 403, unknown ids 404, the wrong state 409, bad filters 422. A job's span links to the
trace of the request that enqueued it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import httpx
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from parley.core.db import Database
from parley.core.telemetry import add_span_processor, get_tracer
from parley.jobs.kinds import JobKind, JobRun
from parley.settings import Settings
from tests.fixtures.accounts import TestUser
from tests.fixtures.polling import wait_for
from tests.jobs.conftest import WorkerFactory
from tests.jobs.helpers import Recorder, enqueue_one, job_row, kinds_of, status_is

ECHO = JobKind("test.echo", max_attempts=1)
OTHER = JobKind("test.other", max_attempts=2)
JOB_FIELDS = {
    "id",
    "kind",
    "queue",
    "status",
    "attempts",
    "max_attempts",
    "run_at",
    "started_at",
    "finished_at",
    "progress",
    "error",
}


async def test_admins_list_jobs_newest_first_filtered_by_status_and_kind(
    client: httpx.AsyncClient, admin: TestUser, database: Database
) -> None:
    first = await enqueue_one(database, ECHO, {"n": 1})
    second = await enqueue_one(database, OTHER, {"n": 2}, queue="reports")
    response = await client.get("/api/admin/jobs", headers=admin.headers)
    assert response.status_code == 200, response.text
    items = response.json()["data"]["items"]
    assert [item["id"] for item in items] == [str(second), str(first)]
    assert set(items[0]) == JOB_FIELDS
    assert items[0] | {"run_at": None} == {
        "id": str(second),
        "kind": "test.other",
        "queue": "reports",
        "status": "queued",
        "attempts": 0,
        "max_attempts": 2,
        "run_at": None,
        "started_at": None,
        "finished_at": None,
        "progress": 0.0,
        "error": None,
    }
    by_kind = await client.get(
        "/api/admin/jobs", params={"kind": "test.echo"}, headers=admin.headers
    )
    assert [item["id"] for item in by_kind.json()["data"]["items"]] == [str(first)]
    by_status = await client.get(
        "/api/admin/jobs", params={"status": "failed"}, headers=admin.headers
    )
    assert by_status.json()["data"]["items"] == []
    page = await client.get("/api/admin/jobs", params={"limit": 1}, headers=admin.headers)
    cursor = page.json()["data"]["next_cursor"]
    rest = await client.get(
        "/api/admin/jobs", params={"limit": 1, "cursor": cursor}, headers=admin.headers
    )
    assert [item["id"] for item in rest.json()["data"]["items"]] == [str(first)]


@pytest.mark.parametrize(
    "params",
    [
        {"status": "done"},
        {"kind": "DROP TABLE"},
        {"kind": "x" * 101},
        {"limit": 0},
        {"cursor": "x"},
    ],
)
async def test_bad_filters_are_422(
    client: httpx.AsyncClient, admin: TestUser, params: dict[str, object]
) -> None:
    response = await client.get("/api/admin/jobs", params=params, headers=admin.headers)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "validation_error"


async def test_only_admins_see_and_change_jobs(
    client: httpx.AsyncClient, user: TestUser, database: Database
) -> None:
    job_id = await enqueue_one(database, ECHO)
    for method, path in (
        ("GET", "/api/admin/jobs"),
        ("POST", f"/api/admin/jobs/{job_id}/cancel"),
        ("POST", f"/api/admin/jobs/{job_id}/retry"),
    ):
        response = await client.request(method, path, headers=user.headers)
        assert response.status_code == 403, (path, response.text)
        anonymous = await client.request(method, path)
        assert anonymous.status_code == 401, (path, anonymous.text)
    assert (await job_row(database, job_id)).status == "queued"


async def test_unknown_jobs_are_404(client: httpx.AsyncClient, admin: TestUser) -> None:
    for action in ("cancel", "retry"):
        response = await client.post(
            f"/api/admin/jobs/{uuid.uuid4()}/{action}", headers=admin.headers
        )
        assert response.status_code == 404, response.text
        assert response.json()["error"]["code"] == "not_found"
    malformed = await client.post("/api/admin/jobs/not-a-uuid/cancel", headers=admin.headers)
    assert malformed.status_code == 422


async def test_cancel_a_queued_job_then_retry_it(
    client: httpx.AsyncClient, admin: TestUser, database: Database, start_worker: WorkerFactory
) -> None:
    job_id = await enqueue_one(database, ECHO)
    cancelled = await client.post(f"/api/admin/jobs/{job_id}/cancel", headers=admin.headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["data"]["status"] == "cancelled"
    assert cancelled.json()["data"]["finished_at"] is not None
    again = await client.post(f"/api/admin/jobs/{job_id}/cancel", headers=admin.headers)
    assert again.status_code == 409
    recorder = Recorder()
    start_worker(kinds_of((ECHO, recorder)))
    await asyncio.sleep(0.3)
    assert recorder.runs == []  # a cancelled job does not run
    retried = await client.post(f"/api/admin/jobs/{job_id}/retry", headers=admin.headers)
    assert retried.status_code == 200, retried.text
    assert retried.json()["data"] | {"run_at": None} == retried.json()["data"] | {
        "status": "queued",
        "attempts": 0,
        "finished_at": None,
        "run_at": None,
    }
    await wait_for(status_is(database, job_id, "succeeded"))
    assert recorder.ids() == [job_id]
    done = await client.post(f"/api/admin/jobs/{job_id}/retry", headers=admin.headers)
    assert done.status_code == 409
    assert done.json()["error"]["code"] == "conflict"


async def test_cancelling_a_running_job_stops_it(
    client: httpx.AsyncClient, admin: TestUser, database: Database, start_worker: WorkerFactory
) -> None:
    stopped = asyncio.Event()

    async def endless(job: JobRun) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.set()
            raise

    start_worker(kinds_of((ECHO, endless)))
    job_id = await enqueue_one(database, ECHO)
    await wait_for(status_is(database, job_id, "running"))
    response = await client.post(f"/api/admin/jobs/{job_id}/cancel", headers=admin.headers)
    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == "cancelled"
    await asyncio.wait_for(stopped.wait(), 5)
    await asyncio.sleep(0.2)
    assert (await job_row(database, job_id)).status == "cancelled"  # not overwritten


async def test_a_failed_job_shows_its_error_and_is_retried_with_all_its_attempts(
    client: httpx.AsyncClient, admin: TestUser, database: Database, start_worker: WorkerFactory
) -> None:
    calls: list[int] = []

    async def fails_first(job: JobRun) -> None:
        calls.append(job.attempt)
        if len(calls) == 1:
            raise ValueError("bad input file")

    start_worker(kinds_of((ECHO, fails_first)))
    job_id = await enqueue_one(database, ECHO)
    await wait_for(status_is(database, job_id, "failed"))
    listed = await client.get("/api/admin/jobs", params={"status": "failed"}, headers=admin.headers)
    [failed] = listed.json()["data"]["items"]
    assert failed["error"] == "ValueError: bad input file"
    assert failed["attempts"] == 1
    retried = await client.post(f"/api/admin/jobs/{job_id}/retry", headers=admin.headers)
    assert retried.status_code == 200
    job = await wait_for(status_is(database, job_id, "succeeded"))
    assert calls == [1, 1]
    assert job.error is None


async def test_a_jobs_span_links_to_the_trace_that_enqueued_it(
    settings: Settings,
    database: Database,
    start_worker: WorkerFactory,
    auth_client: Callable[[TestUser], httpx.AsyncClient],
) -> None:
    exporter = InMemorySpanExporter()
    add_span_processor(settings, SimpleSpanProcessor(exporter))
    try:
        with get_tracer().start_as_current_span("request") as request_span:
            job_id = await enqueue_one(database, ECHO)
        start_worker(kinds_of((ECHO, Recorder())))
        await wait_for(status_is(database, job_id, "succeeded"))

        async def job_span() -> object:
            return next(
                (span for span in exporter.get_finished_spans() if span.name == "job test.echo"),
                None,
            )

        span = await wait_for(job_span)
        enqueuer = request_span.get_span_context()
        assert span.context.trace_id != enqueuer.trace_id  # a trace of its own...
        assert [link.context.trace_id for link in span.links] == [enqueuer.trace_id]  # linked
        assert [link.context.span_id for link in span.links] == [enqueuer.span_id]
        assert span.attributes["parley.job.id"] == str(job_id)
    finally:
        exporter.shutdown()
