"""procrastinate's side of the background-jobs benchmark (`bench.jobs`), run by the interpreter of
`bench/procrastinate/.venv` (procrastinate is not one of Parley's dependencies):

    bench_app.py schema --dsn DSN                  apply procrastinate's schema
    bench_app.py worker --dsn DSN --record FILE    one worker process (see below)
    bench_app.py defer --dsn DSN --jobs N --batch B --run TAG
                                                   defer N jobs, B per `batch_defer_async` call
    bench_app.py steady --dsn DSN --jobs N --rate R --run TAG --out FILE
                                                   defer N jobs one at a time, R a second

One task, `bench.empty(run, n)`, does nothing but note `(run, n, time.time())` in memory. A worker
opens its pool, writes `<record>.ready`, waits for SIGUSR1, then runs `App.run_worker_async` with
`--concurrency` and LISTEN/NOTIFY on (the defaults otherwise); at SIGTERM it stops the worker
(cancelling `run_worker_async` is procrastinate's graceful stop) and writes one `run,n,start_ts`
line per job run to `--record`. `defer` prints `started_ts,finished_ts`; `steady` writes one
`n,commit_ts` line per job (the time `defer_async` returned: its statement has committed).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import time
from pathlib import Path
from typing import Any

from procrastinate import App, PsycopgConnector  # type: ignore[import-not-found]

TASK_NAME = "bench.empty"


def make_app(dsn: str, started: list[tuple[str, int, float]]) -> tuple[Any, Any]:
    """The app over `dsn` and its one task, which notes each run in `started`."""
    app = App(connector=PsycopgConnector(conninfo=dsn))

    async def empty(run: str, n: int) -> None:
        started.append((run, n, time.time()))

    return app, app.task(name=TASK_NAME)(empty)


def write_lines(path: Path, lines: list[str]) -> None:
    """Write `lines` to `path`."""
    path.write_text("".join(lines), encoding="utf-8")


async def first_of(*events: asyncio.Event) -> None:
    """Wait until one of `events` is set."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    for wait in waits:
        wait.cancel()


async def schema(args: argparse.Namespace) -> None:
    """Apply procrastinate's schema to a new database."""
    app, _task = make_app(args.dsn, [])
    async with app.open_async():
        await app.schema_manager.apply_schema_async()


async def worker(args: argparse.Namespace) -> None:
    """Wait for SIGUSR1, run a worker until SIGTERM, then write the record."""
    started: list[tuple[str, int, float]] = []
    app, _task = make_app(args.dsn, started)
    loop = asyncio.get_running_loop()
    go, stop = asyncio.Event(), asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, go.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    record = Path(args.record)
    try:
        async with app.open_async():
            record.with_suffix(".ready").write_text("ready\n", encoding="utf-8")
            await first_of(go, stop)
            if stop.is_set():
                return
            running = asyncio.create_task(
                app.run_worker_async(
                    concurrency=args.concurrency,
                    name=f"bench-{record.stem}",
                    listen_notify=True,
                    install_signal_handlers=False,
                )
            )
            await stop.wait()
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
    finally:
        write_lines(record, [f"{run},{n},{at!r}\n" for run, n, at in started])


async def defer(args: argparse.Namespace) -> None:
    """Defer `--jobs` jobs in batches of `--batch`, each batch one statement."""
    app, task = make_app(args.dsn, [])
    async with app.open_async():
        begun = time.time()
        for first in range(0, args.jobs, args.batch):
            batch = range(first, min(args.jobs, first + args.batch))
            await task.batch_defer_async(*({"run": args.run, "n": n} for n in batch))
        print(f"{begun!r},{time.time()!r}", flush=True)


async def steady(args: argparse.Namespace) -> None:
    """Defer `--jobs` jobs one at a time (a transaction each), `--rate` a second."""
    app, task = make_app(args.dsn, [])
    lines = []
    async with app.open_async():
        begun = time.perf_counter()
        for n in range(args.jobs):
            pause = begun + n / args.rate - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            await task.defer_async(run=args.run, n=n)
            lines.append(f"{n},{time.time()!r}\n")
    write_lines(Path(args.out), lines)


def main() -> None:
    """Parse the command line and run the command (on uvloop when installed)."""
    parser = argparse.ArgumentParser(description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("schema", "worker", "defer", "steady"):
        command = commands.add_parser(name)
        command.add_argument("--dsn", required=True)
        if name == "worker":
            command.add_argument("--record", required=True)
            command.add_argument("--concurrency", type=int, default=4)
        if name in ("defer", "steady"):
            command.add_argument("--jobs", type=int, required=True)
            command.add_argument("--run", required=True)
        if name == "defer":
            command.add_argument("--batch", type=int, default=100)
        if name == "steady":
            command.add_argument("--rate", type=float, default=50.0)
            command.add_argument("--out", required=True)
    args = parser.parse_args()
    coroutine = {"schema": schema, "worker": worker, "defer": defer, "steady": steady}[
        args.command
    ](args)
    try:
        import uvloop
    except ImportError:
        asyncio.run(coroutine)
    else:
        uvloop.run(coroutine)


if __name__ == "__main__":
    main()
