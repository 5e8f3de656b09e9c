"""`uv run python -m bench.task_events --base DIR [--db postgres]`: what writing a task's event
to the outbox costs a task update, as interleaved A/B rounds of `PATCH /api/tasks/{id}` against
the checkout at `DIR` (A: a `git worktree` of a commit before the outbox, with its own synced
`.venv`) and this one (B).

Each server runs on a database of its own (SQLite files, or fresh PostgreSQL databases) with no
worker in its process (`WORKER_IN_PROCESS=false`, as bench.servers sets): the measured cost is
the request's, the event's INSERT in the update's transaction; the relay that numbers events runs
in `parley worker` processes. Each round, for A then B (the order alternates), updates `--tasks`
tasks `--updates` times in all at `--concurrency` and prints the server's CPU-seconds per 1,000
updates, the p50 and p99 latency, and the ratio B/A; the medians of the ratios come last.
Loopback only; stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx

from bench.load import percentile, run_load
from bench.pg import postgres_database
from bench.proc import cpu_seconds
from bench.servers import (
    Server,
    create_bench_user,
    free_port,
    parley_environment,
    sign_in,
    start,
)

DEFAULT_POSTGRES = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def _start(tree: Path, logs: Path, data: Path, database_url: str | None, name: str) -> Server:
    env = parley_environment(data, None, database_url)
    python = str(tree / ".venv" / "bin" / "python")
    create_bench_user(env, python=python)
    port = free_port()
    command = [python, "-m", "parley", "serve", "--port", str(port), "--no-migrate"]
    return start(name, command, port, "/health/live", env, logs)


def _make_tasks(server: Server, token: str, count: int) -> list[str]:
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, timeout=30) as http:
        return [
            http.post("/api/tasks", json={"title": f"task {n}"}, headers=headers)
            .raise_for_status()
            .json()["data"]["id"]
            for n in range(count)
        ]


async def _round(
    server: Server, token: str, tasks: list[str], updates: int, concurrency: int
) -> tuple[float, float, float]:
    headers = {"Authorization": f"Bearer {token}", "content-type": "application/json"}

    def request(number: int) -> tuple[str, str, dict[str, object], dict[str, str]]:
        task = tasks[number % len(tasks)]
        body: dict[str, object] = {
            "title": f"task {number}",
            "priority": ("low", "high")[number % 2],
        }
        return "PATCH", f"{server.url}/api/tasks/{task}", body, headers

    before = cpu_seconds(server.pid)
    result = await run_load(request, total=updates, concurrency=concurrency)
    after = cpu_seconds(server.pid)
    # `no_first_token` is the load runner's note for an answer with no streamed token: a task
    # update answers plain JSON.
    failures = {key: n for key, n in result.failures.items() if key != "no_first_token"}
    if failures:
        print(f"  {server.name}: {failures} failed in this round", flush=True)
    return (
        (after - before) * 1000 / updates,
        percentile(result.latency_ms, 0.5),
        percentile(result.latency_ms, 0.99),
    )


@contextlib.contextmanager
def _databases(kind: str, admin_url: str) -> Iterator[tuple[str | None, str | None]]:
    if kind == "sqlite":
        yield None, None
        return
    with (
        postgres_database(admin_url, "parley_bench_events_a") as a,
        postgres_database(admin_url, "parley_bench_events_b") as b,
    ):
        yield a, b


def main() -> None:
    """Run the rounds and print the pairs."""
    parser = argparse.ArgumentParser(prog="python -m bench.task_events", description=__doc__)
    parser.add_argument("--base", type=Path, required=True, help="checkout A (with .venv)")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--updates", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    with (
        tempfile.TemporaryDirectory(prefix="parley-task-events-") as scratch,
        _databases(args.db, args.postgres_url) as (url_a, url_b),
    ):
        root = Path(scratch)
        servers: list[Server] = []
        try:
            servers.append(_start(args.base.resolve(), root, root / "a", url_a, "A"))
            servers.append(_start(here, root, root / "b", url_b, "B"))
            tokens = {server.name: sign_in(server)["access_token"] for server in servers}
            tasks = {s.name: _make_tasks(s, tokens[s.name], args.tasks) for s in servers}
            for server in servers:  # warm-up, outside the figures
                asyncio.run(_round(server, tokens[server.name], tasks[server.name], 400, 8))
            ratios = []
            print(f"{args.db}: round  CPU-ms/update A  B  B/A  |  p50 ms A  B  |  p99 ms A  B")
            for number in range(args.rounds):
                order = servers if number % 2 == 0 else list(reversed(servers))
                figures = {
                    s.name: asyncio.run(
                        _round(s, tokens[s.name], tasks[s.name], args.updates, args.concurrency)
                    )
                    for s in order
                }
                (cpu_a, p50_a, p99_a), (cpu_b, p50_b, p99_b) = figures["A"], figures["B"]
                ratios.append(cpu_b / cpu_a)
                print(
                    f"{number + 1:5}  {cpu_a:6.3f}  {cpu_b:6.3f}  {cpu_b / cpu_a:5.3f}  |  "
                    f"{p50_a:6.2f}  {p50_b:6.2f}  |  {p99_a:6.2f}  {p99_b:6.2f}",
                    flush=True,
                )
            print(f"median B/A CPU per update: {statistics.median(ratios):.3f}")
        finally:
            for server in servers:
                server.stop()


if __name__ == "__main__":
    main()
    sys.exit(0)
