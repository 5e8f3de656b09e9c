"""A worker process for the multi-process job tests: `python -m tests.jobs.worker_process
--database-url URL --record FILE [--concurrency N] [--lease S] [--every S]`.

It runs Parley's `Worker` (the same class `parley worker` runs) with one test kind,
`test.record`: it sleeps `args["sleep"]` seconds if given, then appends `<job id> <attempt>
<pid>` to the record file (one short `O_APPEND` write, so lines of several processes never mix).
With `--every`, it also fires the schedule `test.tick` (the same kind) every that many seconds.
It stops on SIGTERM like `parley worker`: running jobs finish or go back to the queue.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from parley.core.db import Database
from parley.jobs.kinds import JobKind, JobKinds, JobRun
from parley.jobs.queue import watch_enqueues
from parley.jobs.schedules import Schedule
from parley.jobs.worker import Worker
from parley.settings import Settings

RECORD = JobKind("test.record", max_attempts=5, backoff_seconds=0.2)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--poll", type=float, default=0.2)
    parser.add_argument("--every", type=float, default=None)
    options = parser.parse_args()
    settings = Settings(_env_file=None, database_url=options.database_url, log_level="WARNING")
    descriptor = os.open(options.record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def record(job: JobRun) -> None:
        if job.args.get("sleep"):
            await asyncio.sleep(float(job.args["sleep"]))
        os.write(descriptor, f"{job.id} {job.attempt} {os.getpid()}\n".encode())

    kinds = JobKinds()
    kinds.handle(RECORD, record)
    schedules = (
        [Schedule("test.tick", RECORD, every_seconds=options.every)] if options.every else []
    )
    watch_enqueues()
    database = Database.from_settings(settings)
    worker = Worker(
        database,
        kinds,
        concurrency=options.concurrency,
        lease_seconds=options.lease,
        poll_seconds=options.poll,
        shutdown_seconds=5.0,
        schedules=schedules,
    )
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    worker.start()
    print("ready", flush=True)
    await stopping.wait()
    await worker.stop()
    await database.dispose()
    os.close(descriptor)


if __name__ == "__main__":
    asyncio.run(main())
