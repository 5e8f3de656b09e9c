"""`python -m bench.job_worker`: one Parley worker process for the background-jobs benchmark
(`bench.jobs`).

It builds a `parley.jobs.worker.Worker` over the database of `--database-url` with one kind,
`bench.empty`, whose handler does nothing but note `(args["run"], args["n"], time.time())` in
memory. It opens a pooled connection, writes `<record>.ready`, and waits for SIGUSR1 before it
starts the worker (so that jobs enqueued before are all there when the clock starts); at SIGTERM
it stops the worker (`Worker.stop`) and writes what it noted to `--record`, one
`run,n,start_ts` line per job run (the bench checks from them that no job ran twice).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import logging
import signal
import sys
import time
from pathlib import Path

from sqlalchemy import text

from parley.core.db import Database
from parley.jobs.kinds import JobKind, JobKinds, JobRun
from parley.jobs.worker import Worker
from parley.settings import Settings

EMPTY = JobKind("bench.empty", max_attempts=3, backoff_seconds=1.0)
JWT_SECRET = "bench-secret-" + "x" * 40


def write_record(record: Path, started: list[tuple[str, int, float]]) -> None:
    """One `run,n,start_ts` line per job run."""
    record.write_text("".join(f"{run},{n},{at!r}\n" for run, n, at in started), encoding="utf-8")


async def first_of(*events: asyncio.Event) -> None:
    """Wait until one of `events` is set."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for wait in waits:
        wait.cancel()


async def serve(args: argparse.Namespace) -> None:
    """Wait for SIGUSR1, run the worker until SIGTERM, then write the record."""
    started: list[tuple[str, int, float]] = []

    async def empty(job: JobRun) -> None:
        started.append((str(job.args["run"]), int(job.args["n"]), time.time()))

    settings = Settings(
        _env_file=None,
        database_url=args.database_url,
        jwt_secret=JWT_SECRET,
    )
    database = Database.from_settings(settings)
    kinds = JobKinds()
    kinds.handle(EMPTY, empty)
    worker = Worker(
        database,
        kinds,
        concurrency=args.concurrency,
        poll_seconds=args.poll_seconds,
        shutdown_seconds=5.0,
    )
    loop = asyncio.get_running_loop()
    go, stop = asyncio.Event(), asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, go.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with database.engine.connect() as connection:  # a warm pool, as a running worker has
        await connection.execute(text("SELECT 1"))
    record = Path(args.record)
    record.with_suffix(".ready").write_text("ready\n", encoding="utf-8")
    try:
        await first_of(go, stop)
        if not stop.is_set():
            worker.start()
            await stop.wait()
            await worker.stop()
    finally:
        await database.dispose()
        write_record(record, started)


def main() -> None:
    """Parse the arguments and serve on uvloop (as `parley worker` does) where installed."""
    parser = argparse.ArgumentParser(prog="python -m bench.job_worker", description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--poll-seconds", type=float, default=1.0)
    parser.add_argument("--record", required=True, help="where to write run,n,start_ts lines")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if importlib.util.find_spec("uvloop"):
        import uvloop

        uvloop.run(serve(args))
    else:
        asyncio.run(serve(args))


if __name__ == "__main__":
    main()
