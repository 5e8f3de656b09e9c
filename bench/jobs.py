"""`uv run python -m bench.jobs [--jobs N] [--latency-jobs L] [--rounds R]`: the background-jobs
queue (`parley.jobs`) beside procrastinate, doing the same work — enqueue a job, claim it, run an
empty handler, record its end — and printing its section of BENCHMARKS.md and its target rows.
`python -m bench` runs the same and writes them into BENCHMARKS.md.

Five configurations, each in a scratch database on loopback, interleaved (the order reversed in
every other round): Parley on SQLite with one worker process; Parley on PostgreSQL with one and
with four; procrastinate (installed from PyPI into `bench/procrastinate/.venv` on first use, at
the versions `bench/procrastinate/requirements.txt` pins) on the same PostgreSQL server with one
and with four. Every worker process runs 4 jobs at once, listens for PostgreSQL's NOTIFY, and keeps
its system's default poll (Parley 1 s, procrastinate 5 s); each runs on uvloop. Worker processes
are `python -m bench.job_worker` and `bench/procrastinate/bench_app.py worker`; each handler only
notes when it started.

Each configuration measures, with the same worker processes:
1. jobs per second, enqueued first: `--jobs` jobs enqueued in transactions of 100 (Parley: one
   `enqueue_many` of 100 and a commit; procrastinate: one `batch_defer_async` of 100) while the
   workers wait, then the clock runs from the signal that starts the workers until the database
   counts every job succeeded (polled every 25 ms). The workers' CPU over that time, per 1,000 jobs.
2. jobs per second, enqueued while the workers run: the same enqueue with the workers running,
   from its first statement until every job has succeeded.
3. the latency from enqueue to start: `--latency-jobs` jobs enqueued one per transaction at
   `--rate` a second into idle workers (Parley: `enqueue` and commit in this process;
   procrastinate: `defer_async` in a process of its venv); each latency is the handler's
   `time.time()` at its start minus the enqueuer's just after the commit returned.
At the end the workers stop (SIGTERM) and write which jobs they ran: the bench checks that every
job ran exactly once and that the database has each one succeeded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bench.load import percentile
from bench.pg import postgres_database
from bench.proc import cpu_seconds
from bench.report import Check, table
from bench.servers import _environment
from parley import migrate
from parley.core.db import Database
from parley.jobs.kinds import JobKind
from parley.jobs.queue import enqueue, enqueue_many
from parley.settings import Settings

ROOT = Path(__file__).parent.parent
PROCRASTINATE_DIR = Path(__file__).parent / "procrastinate"
PROCRASTINATE_VENV = PROCRASTINATE_DIR / ".venv"
PROCRASTINATE_REQUIREMENTS = PROCRASTINATE_DIR / "requirements.txt"
PROCRASTINATE_APP = PROCRASTINATE_DIR / "bench_app.py"
CONCURRENCY = 4  # jobs at once per worker process, both systems
BATCH = 100  # jobs per enqueue transaction in the throughput runs
COUNT_EVERY_SECONDS = 0.025
DONE_TIMEOUT_SECONDS = 300.0
READY_TIMEOUT_SECONDS = 60.0
QUIET_BELOW, QUIET_TIMEOUT_SECONDS = 0.25, 60.0
EMPTY = JobKind("bench.empty", max_attempts=3, backoff_seconds=1.0)  # as bench.job_worker's
JWT_SECRET = "bench-secret-" + "x" * 40
PARLEY, PROCRASTINATE = "Parley", "procrastinate"
SQLITE, POSTGRESQL = "SQLite", "PostgreSQL"


def procrastinate_python() -> Path:
    """The interpreter of `bench/procrastinate/.venv`, made with uv and filled from
    `requirements.txt` on first use (and again when the requirements change)."""
    python = PROCRASTINATE_VENV / "bin" / "python"
    stamp = PROCRASTINATE_VENV / ".requirements.txt"
    wanted = PROCRASTINATE_REQUIREMENTS.read_text("utf-8")
    if python.exists() and stamp.exists() and stamp.read_text("utf-8") == wanted:
        return python
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError("the procrastinate side needs uv to make its virtualenv")
    print("bench: installing procrastinate into bench/procrastinate/.venv", file=sys.stderr)
    if not python.exists():
        subprocess.run(  # noqa: S603
            [uv, "venv", "--quiet", "--python", sys.executable, str(PROCRASTINATE_VENV)],
            check=True,
        )
    subprocess.run(  # noqa: S603
        [
            uv,
            "pip",
            "install",
            "--quiet",
            "--python",
            str(python),
            "-r",
            str(PROCRASTINATE_REQUIREMENTS),
        ],
        check=True,
    )
    stamp.write_text(wanted, encoding="utf-8")
    return python


@dataclass(frozen=True)
class Config:
    """One system on one database with a number of worker processes."""

    system: str
    database: str
    processes: int

    @property
    def slug(self) -> str:
        """A name for its files."""
        return f"{self.system}-{self.database}-{self.processes}".lower()

    @property
    def label(self) -> str:
        """A name for the report."""
        plural = "es" if self.processes > 1 else ""
        return f"{self.system}, {self.database}, {self.processes} worker process{plural}"


@dataclass
class Outcome:
    """What one round of one configuration measured."""

    enqueue_per_second: float = math.nan
    upfront_per_second: float = math.nan
    live_per_second: float = math.nan
    cpu_per_1000: float = math.nan
    latency_ms: list[float] = field(default_factory=list)
    jobs: int = 0
    busy_before: float = 0.0  # the machine's CPU in use just before (other processes)
    problems: list[str] = field(default_factory=list)


class Backend(Protocol):
    """One system's queue as the bench drives it."""

    async def reset(self) -> None:
        """Empty the queue (no worker runs)."""

    def worker_command(self, record: Path) -> list[str]:
        """The command line of one worker process writing its record to `record`."""

    async def enqueue_batches(self, jobs: int, run: str) -> tuple[float, float]:
        """Enqueue `jobs` jobs tagged `run`, `BATCH` per transaction; when the first began and
        when the last committed (`time.time()`)."""

    async def steady(self, jobs: int, rate: float, run: str) -> dict[int, float]:
        """Enqueue `jobs` jobs tagged `run`, one per transaction, `rate` a second; each job's
        `time.time()` just after its commit, by its number."""

    async def succeeded(self) -> int:
        """How many jobs have succeeded."""

    async def statuses(self) -> Counter[str]:
        """How many jobs the database has in each status."""

    async def close(self) -> None:
        """Let go of the database."""


def parley_settings(url: str) -> Settings:
    """Settings for the bench's own connections to Parley's queue."""
    return Settings(
        _env_file=None,
        database_url=url,
        jwt_secret=JWT_SECRET,
    )


class ParleyBackend:
    """Parley's queue: `enqueue` and commit from this process, workers of `bench.job_worker`."""

    def __init__(self, url: str, poll_seconds: float) -> None:
        self.url = url
        self.poll_seconds = poll_seconds
        self.database = Database.from_settings(parley_settings(url))
        self.postgres = url.startswith("postgresql")

    async def reset(self) -> None:
        async with self.database.engine.begin() as connection:
            await connection.execute(text("TRUNCATE jobs" if self.postgres else "DELETE FROM jobs"))

    def worker_command(self, record: Path) -> list[str]:
        return [
            sys.executable,
            "-m",
            "bench.job_worker",
            "--database-url",
            self.url,
            "--concurrency",
            str(CONCURRENCY),
            "--poll-seconds",
            str(self.poll_seconds),
            "--record",
            str(record),
        ]

    async def enqueue_batches(self, jobs: int, run: str) -> tuple[float, float]:
        begun = time.time()
        for first in range(0, jobs, BATCH):
            async with self.database.sessionmaker() as session:
                batch = [{"run": run, "n": n} for n in range(first, min(jobs, first + BATCH))]
                await enqueue_many(session, EMPTY, batch)
                await session.commit()
        return begun, time.time()

    async def steady(self, jobs: int, rate: float, run: str) -> dict[int, float]:
        committed: dict[int, float] = {}
        begun = time.perf_counter()
        for n in range(jobs):
            pause = begun + n / rate - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            async with self.database.sessionmaker() as session:
                await enqueue(session, EMPTY, {"run": run, "n": n})
                await session.commit()
            committed[n] = time.time()
        return committed

    async def succeeded(self) -> int:
        async with self.database.engine.connect() as connection:
            count = await connection.scalar(
                text("SELECT count(*) FROM jobs WHERE status = 'succeeded'")
            )
        return int(count or 0)

    async def statuses(self) -> Counter[str]:
        async with self.database.engine.connect() as connection:
            rows = await connection.execute(
                text("SELECT status, attempts, count(*) FROM jobs GROUP BY status, attempts")
            )
            return Counter(
                {f"{status} (attempt {attempts})": int(count) for status, attempts, count in rows}
            )

    async def close(self) -> None:
        await self.database.dispose()


def _read_commits(path: Path) -> dict[int, float]:
    committed = {}
    for line in path.read_text("utf-8").splitlines():
        n, at = line.split(",")
        committed[int(n)] = float(at)
    return committed


def _remove(path: Path) -> None:
    path.unlink(missing_ok=True)


class ProcrastinateBackend:
    """procrastinate's queue: its workers and its enqueuers run in processes of its venv."""

    def __init__(self, dsn: str, python: Path) -> None:
        self.dsn = dsn
        self.python = python
        self.connection: asyncpg.Connection | None = None

    async def _connection(self) -> asyncpg.Connection:
        if self.connection is None:
            self.connection = await asyncpg.connect(self.dsn)
        return self.connection

    async def reset(self) -> None:
        connection = await self._connection()
        await connection.execute("TRUNCATE procrastinate_jobs, procrastinate_events CASCADE")

    def _command(self, name: str, *arguments: str) -> list[str]:
        return [str(self.python), str(PROCRASTINATE_APP), name, "--dsn", self.dsn, *arguments]

    def worker_command(self, record: Path) -> list[str]:
        return self._command("worker", "--record", str(record), "--concurrency", str(CONCURRENCY))

    async def _client(self, *arguments: str) -> str:
        process = await asyncio.create_subprocess_exec(
            *self._command(*arguments),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=_environment(),
        )
        out, err = await process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"procrastinate {arguments[0]} failed:\n{err.decode()[-4000:]}")
        return out.decode()

    async def enqueue_batches(self, jobs: int, run: str) -> tuple[float, float]:
        out = await self._client("defer", "--jobs", str(jobs), "--batch", str(BATCH), "--run", run)
        begun, finished = out.strip().split(",")
        return float(begun), float(finished)

    async def steady(self, jobs: int, rate: float, run: str) -> dict[int, float]:
        with tempfile.NamedTemporaryFile(suffix=".csv", delete=False) as handle:
            out = Path(handle.name)
        try:
            await self._client(
                "steady",
                "--jobs",
                str(jobs),
                "--rate",
                str(rate),
                "--run",
                run,
                "--out",
                str(out),
            )
            return _read_commits(out)
        finally:
            _remove(out)

    async def succeeded(self) -> int:
        connection = await self._connection()
        count = await connection.fetchval(
            "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"
        )
        return int(count or 0)

    async def statuses(self) -> Counter[str]:
        connection = await self._connection()
        rows = await connection.fetch(
            "SELECT status::text AS status, count(*) AS count FROM procrastinate_jobs "
            "GROUP BY status"
        )
        return Counter({str(row["status"]): int(row["count"]) for row in rows})

    async def close(self) -> None:
        if self.connection is not None:
            await self.connection.close()
            self.connection = None


@dataclass
class Workers:
    """A configuration's worker processes and the files they write."""

    processes: list[asyncio.subprocess.Process]
    records: list[Path]

    async def ready(self) -> None:
        """Wait until every worker has written its `.ready` file."""
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while not all(record.with_suffix(".ready").exists() for record in self.records):
            for process, record in zip(self.processes, self.records, strict=True):
                if process.returncode is not None:
                    log = record.with_suffix(".log").read_text("utf-8", errors="replace")
                    raise RuntimeError(f"worker {record.stem} exited early:\n{log[-4000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError("the workers did not get ready")
            await asyncio.sleep(0.05)

    def go(self) -> None:
        """Start every worker's job loop."""
        for process in self.processes:
            process.send_signal(signal.SIGUSR1)

    def cpu(self) -> float:
        """The CPU seconds the workers used so far."""
        return sum(cpu_seconds(process.pid) for process in self.processes)

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        for process in self.processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()


async def start_workers(backend: Backend, count: int, directory: Path) -> Workers:
    """Start `count` worker processes, each with a record file and a log in `directory`."""
    processes, records = [], []
    try:
        for index in range(count):
            record = directory / f"worker-{index}.csv"
            records.append(record)
            with record.with_suffix(".log").open("wb") as log:
                processes.append(
                    await asyncio.create_subprocess_exec(
                        *backend.worker_command(record),
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        env=_environment(),
                        cwd=ROOT,
                    )
                )
    except BaseException:
        await Workers(processes, records).stop()
        raise
    return Workers(processes, records)


async def wait_for(backend: Backend, count: int, workers: Workers) -> float:
    """When the database first counted `count` succeeded jobs (`time.time()`)."""
    deadline = time.monotonic() + DONE_TIMEOUT_SECONDS
    while await backend.succeeded() < count:
        if any(process.returncode is not None for process in workers.processes):
            raise RuntimeError("a worker process exited")
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {count} jobs succeeded in {DONE_TIMEOUT_SECONDS:g} s")
        await asyncio.sleep(COUNT_EVERY_SECONDS)
    return time.time()


def _cpu_ticks() -> tuple[int, int]:
    """The machine's busy and total CPU ticks since boot (`/proc/stat`)."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle and iowait
    return sum(values) - idle, sum(values)


async def wait_until_quiet() -> float:
    """Wait (up to `QUIET_TIMEOUT_SECONDS`) until the machine's CPU is less than `QUIET_BELOW`
    busy over half a second (another process's test run would skew the figures); how busy it
    was last."""
    deadline = time.monotonic() + QUIET_TIMEOUT_SECONDS
    while True:
        busy_before, total_before = _cpu_ticks()
        await asyncio.sleep(0.5)
        busy_after, total_after = _cpu_ticks()
        busy = (busy_after - busy_before) / max(1, total_after - total_before)
        if busy < QUIET_BELOW or time.monotonic() > deadline:
            return busy


def read_records(records: list[Path]) -> dict[tuple[str, int], list[float]]:
    """Every job the workers ran: its start times by `(run, n)` (more than one: it ran twice)."""
    started: dict[tuple[str, int], list[float]] = {}
    for record in records:
        if not record.exists():
            continue
        for line in record.read_text("utf-8").splitlines():
            run, n, at = line.split(",")
            started.setdefault((run, int(n)), []).append(float(at))
    return started


def _make_directory(directory: Path) -> None:
    directory.mkdir(parents=True)


async def measure(
    config: Config, backend: Backend, directory: Path, *, jobs: int, latency_jobs: int, rate: float
) -> Outcome:
    """One round of one configuration: the two throughputs, then the latency, then the check
    that every job ran once."""
    outcome = Outcome(jobs=2 * jobs + latency_jobs)
    _make_directory(directory)
    await backend.reset()
    outcome.busy_before = await wait_until_quiet()
    workers = await start_workers(backend, config.processes, directory)
    committed: dict[int, float] = {}
    try:
        await workers.ready()
        begun, finished = await backend.enqueue_batches(jobs, "upfront")
        outcome.enqueue_per_second = jobs / (finished - begun)
        cpu_before = workers.cpu()
        begun = time.time()
        workers.go()
        done = await wait_for(backend, jobs, workers)
        outcome.cpu_per_1000 = (workers.cpu() - cpu_before) / jobs * 1000
        outcome.upfront_per_second = jobs / (done - begun)
        enqueuing = asyncio.create_task(backend.enqueue_batches(jobs, "live"))
        done = await wait_for(backend, 2 * jobs, workers)
        outcome.live_per_second = jobs / (done - (await enqueuing)[0])
        await asyncio.sleep(1.0)  # idle workers
        committed = await backend.steady(latency_jobs, rate, "latency")
        await wait_for(backend, 2 * jobs + latency_jobs, workers)
    except (TimeoutError, RuntimeError) as exc:
        outcome.problems.append(str(exc))
    finally:
        await workers.stop()
    started = read_records(workers.records)
    for n, at in committed.items():
        if ("latency", n) in started:
            outcome.latency_ms.append((min(started["latency", n]) - at) * 1000)
    expected = {(run, n) for run in ("upfront", "live") for n in range(jobs)}
    expected |= {("latency", n) for n in range(latency_jobs)}
    twice = sum(1 for times in started.values() if len(times) > 1)
    missing = len(expected - started.keys())
    if twice:
        outcome.problems.append(f"{twice} jobs ran more than once")
    if missing:
        outcome.problems.append(f"{missing} jobs never ran")
    statuses = await backend.statuses()
    good = "succeeded (attempt 1)" if config.system == PARLEY else "succeeded"
    if statuses[good] != len(expected) or sum(statuses.values()) != len(expected):
        outcome.problems.append(f"the database holds {dict(statuses)}")
    return outcome


CONFIGS = [
    Config(PARLEY, SQLITE, 1),
    Config(PARLEY, POSTGRESQL, 1),
    Config(PROCRASTINATE, POSTGRESQL, 1),
    Config(PARLEY, POSTGRESQL, 4),
    Config(PROCRASTINATE, POSTGRESQL, 4),
]


@dataclass
class Results:
    """Every round of every configuration."""

    outcomes: dict[Config, list[Outcome]]
    jobs: int
    latency_jobs: int
    rate: float
    rounds: int
    sqlite_poll_seconds: float

    def median(self, config: Config, name: str) -> float:
        """The median over the rounds of one figure."""
        values = [getattr(outcome, name) for outcome in self.outcomes[config]]
        values = [value for value in values if not math.isnan(value)]
        return statistics.median(values) if values else math.nan

    def latencies(self, config: Config) -> list[float]:
        """Every round's start latencies, in ms."""
        return [value for outcome in self.outcomes[config] for value in outcome.latency_ms]

    def problems(self, config: Config) -> list[str]:
        """What went wrong in any round."""
        return [problem for outcome in self.outcomes[config] for problem in outcome.problems]


async def _measure_all(
    backends: dict[Config, Backend],
    workdir: Path,
    *,
    jobs: int,
    latency_jobs: int,
    rate: float,
    rounds: int,
) -> dict[Config, list[Outcome]]:
    outcomes: dict[Config, list[Outcome]] = {config: [] for config in backends}
    try:
        for round_number in range(rounds):
            order = list(backends) if round_number % 2 == 0 else list(backends)[::-1]
            for config in order:
                print(f"bench: jobs, round {round_number + 1}: {config.label}", file=sys.stderr)
                outcome = await measure(
                    config,
                    backends[config],
                    workdir / f"round-{round_number + 1}" / config.slug,
                    jobs=jobs,
                    latency_jobs=latency_jobs,
                    rate=rate,
                )
                print(
                    f"bench:   {outcome.upfront_per_second:.0f} jobs/s enqueued first, "
                    f"{outcome.live_per_second:.0f} jobs/s enqueued while running, "
                    f"start p50 {percentile(outcome.latency_ms, 0.5):.1f} ms, "
                    f"p99 {percentile(outcome.latency_ms, 0.99):.1f} ms, "
                    f"problems: {outcome.problems or 'none'} "
                    f"(machine {outcome.busy_before:.0%} busy before)",
                    file=sys.stderr,
                )
                outcomes[config].append(outcome)
    finally:
        for backend in backends.values():
            await backend.close()
    return outcomes


@contextlib.contextmanager
def _databases(workdir: Path, postgres_url: str) -> Iterator[tuple[str, str, str]]:
    """Parley's SQLite URL, Parley's PostgreSQL URL and procrastinate's DSN, each a new database
    with its schema."""
    suffix = uuid.uuid4().hex[:8]
    sqlite_url = f"sqlite+aiosqlite:///{(workdir / 'jobs.db').resolve()}"
    with (
        postgres_database(postgres_url, f"parley_jobs_{suffix}") as parley_url,
        postgres_database(postgres_url, f"procrastinate_jobs_{suffix}") as procrastinate_url,
    ):
        for url in (sqlite_url, parley_url):
            migrate.upgrade(parley_settings(url))
        dsn = make_url(procrastinate_url).set(drivername="postgresql")
        yield sqlite_url, parley_url, dsn.render_as_string(hide_password=False)


def run_benchmark(
    workdir: Path,
    postgres_url: str,
    *,
    jobs: int,
    latency_jobs: int,
    rate: float,
    rounds: int,
    sqlite_poll_seconds: float = 1.0,
) -> Results:
    """Make the databases, measure every configuration for `rounds` rounds, drop them."""
    python = procrastinate_python()
    workdir.mkdir(parents=True, exist_ok=True)
    with _databases(workdir, postgres_url) as (sqlite_url, parley_url, dsn):
        subprocess.run(  # noqa: S603
            [str(python), str(PROCRASTINATE_APP), "schema", "--dsn", dsn],
            check=True,
            capture_output=True,
        )
        backends: dict[Config, Backend] = {}
        for config in CONFIGS:
            if config.system == PROCRASTINATE:
                backends[config] = ProcrastinateBackend(dsn, python)
            elif config.database == SQLITE:
                backends[config] = ParleyBackend(sqlite_url, sqlite_poll_seconds)
            else:
                backends[config] = ParleyBackend(parley_url, 1.0)
        outcomes = asyncio.run(
            _measure_all(
                backends, workdir, jobs=jobs, latency_jobs=latency_jobs, rate=rate, rounds=rounds
            )
        )
    return Results(outcomes, jobs, latency_jobs, rate, rounds, sqlite_poll_seconds)


def _find(results: Results, system: str, processes: int) -> Config:
    return next(
        config
        for config in results.outcomes
        if config.system == system
        and config.database == POSTGRESQL
        and config.processes == processes
    )


def checks_of(results: Results) -> list[Check]:
    """Parley's throughput on PostgreSQL at least procrastinate's with as many worker processes
    (jobs enqueued first); Parley's p50 start latency on PostgreSQL under 50 ms; every job run
    exactly once."""
    checks = []
    for processes in (1, 4):
        parley = results.median(_find(results, PARLEY, processes), "upfront_per_second")
        other = results.median(_find(results, PROCRASTINATE, processes), "upfront_per_second")
        ratio = parley / other if other else math.nan
        plural = "es" if processes > 1 else ""
        checks.append(
            Check(
                f"jobs/s on PostgreSQL, Parley vs procrastinate ({processes} worker "
                f"process{plural})",
                f"{ratio:.2f}x ({parley:.0f} vs {other:.0f} jobs/s)",
                "≥ 1x",
                ratio >= 1,
            )
        )
    for processes in (1, 4):
        latencies = results.latencies(_find(results, PARLEY, processes))
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        plural = "es" if processes > 1 else ""
        checks.append(
            Check(
                f"job start latency p50, Parley on PostgreSQL (LISTEN/NOTIFY, {processes} "
                f"worker process{plural})",
                f"{p50:.1f} ms (p99 {p99:.1f} ms)",
                "< 50 ms",
                p50 < 50,
            )
        )
    problems = [
        f"{config.label}: {problem}"
        for config in results.outcomes
        for problem in results.problems(config)
    ]
    total = sum(outcome.jobs for outcomes in results.outcomes.values() for outcome in outcomes)
    checks.append(
        Check(
            "every job run exactly once (each configuration and round)",
            "; ".join(problems) if problems else f"yes, {total:,} jobs",
            "none lost or run twice",
            not problems,
        )
    )
    return checks


def section(results: Results, *, command: str) -> str:
    """The section's text: how it was measured, and the table."""
    rows = []
    for config in results.outcomes:
        latencies = results.latencies(config)
        problems = results.problems(config)
        rows.append(
            {
                "queue": config.system,
                "database": config.database,
                "worker processes": config.processes,
                "enqueue jobs/s": f"{results.median(config, 'enqueue_per_second'):.0f}",
                "jobs/s, enqueued first": f"{results.median(config, 'upfront_per_second'):.0f}",
                "jobs/s, enqueued while running": (
                    f"{results.median(config, 'live_per_second'):.0f}"
                ),
                "worker CPU s per 1,000 jobs": f"{results.median(config, 'cpu_per_1000'):.2f}",
                "start latency p50": f"{percentile(latencies, 0.5):.1f} ms",
                "p99": f"{percentile(latencies, 0.99):.1f} ms",
                "max": f"{max(latencies, default=math.nan):.1f} ms",
                "every job once": "; ".join(problems) if problems else "yes",
            }
        )
    rounds = f"the median of {results.rounds} rounds" if results.rounds > 1 else "one round"
    busy = max(
        (outcome.busy_before for outcomes in results.outcomes.values() for outcome in outcomes),
        default=0.0,
    )
    sqlite_poll = results.sqlite_poll_seconds
    intro = (
        f"Measured on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `{command}` ({rounds}; the "
        "latencies pooled over the rounds). Parley's queue (`parley.jobs`) beside "
        "[procrastinate](https://procrastinate.readthedocs.io/) 3.10.0 (psycopg 3; installed "
        "from PyPI into `bench/procrastinate/.venv`), doing the same work: enqueue a job, claim "
        "it, run an empty handler, record its success. Every worker process is a process of its "
        f"own (`python -m bench.job_worker`, `bench/procrastinate/bench_app.py worker`), runs "
        f"{CONCURRENCY} jobs at once, listens for PostgreSQL's NOTIFY, keeps its system's default "
        f"poll (Parley 1 s; procrastinate 5 s) and runs on uvloop. On SQLite, Parley's poll is "
        f"{sqlite_poll:g} s and, as there is no NOTIFY between processes, it is what wakes an "
        "idle worker for a job enqueued by another process. PostgreSQL 15 on loopback, each "
        "system in a scratch database of its own."
    )
    items = [
        f"**enqueue jobs/s**: {results.jobs:,} jobs in transactions of {BATCH} (Parley: "
        f"one `enqueue_many` of {BATCH} and a commit, in the bench process; procrastinate: one "
        f"`batch_defer_async` of {BATCH}, in a process of its venv), no worker running.",
        "**jobs/s, enqueued first**: those jobs, timed from the signal that starts the waiting "
        "workers until the database counts every one succeeded (polled every "
        f"{COUNT_EVERY_SECONDS * 1000:g} ms). The workers' CPU (user and system) over that "
        "time, per 1,000 jobs.",
        f"**jobs/s, enqueued while running**: {results.jobs:,} more, enqueued the same way with "
        "the workers running, timed from the first enqueue until every one succeeded.",
        f"**start latency**: {results.latency_jobs:,} jobs enqueued one per transaction at "
        f"{results.rate:g} a second into idle workers (Parley: `enqueue` and commit; "
        "procrastinate: `defer_async`); the handler's `time.time()` at its start minus the "
        "enqueuer's just after the commit returned.",
        "**every job once**: the workers' records and the database both show each job run and "
        "succeeded exactly once.",
    ]
    machine = (
        f"Before each configuration the bench waited (up to {QUIET_TIMEOUT_SECONDS:g} s) for the "
        f"machine to be under {QUIET_BELOW:.0%} busy; the busiest it found: {busy:.0%}."
    )
    return "\n\n".join(
        [
            textwrap.fill(intro, 100),
            "\n".join(
                textwrap.fill(item, 100, initial_indent="- ", subsequent_indent="  ")
                for item in items
            ),
            table(rows).strip(),
            textwrap.fill(machine, 100),
        ]
    )


def run(workdir: Path, postgres_url: str, *, quick: bool, command: str) -> tuple[list[Check], str]:
    """The benchmark at `python -m bench`'s sizes: its checks and its section."""
    results = run_benchmark(
        workdir / "jobs",
        postgres_url,
        jobs=300 if quick else 2000,
        latency_jobs=60 if quick else 300,
        rate=50.0,
        rounds=1,
    )
    return checks_of(results), section(results, command=command)


def main() -> None:
    """Run the benchmark; print the target rows and the section as Markdown."""
    parser = argparse.ArgumentParser(prog="python -m bench.jobs", description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per throughput run")
    parser.add_argument("--latency-jobs", type=int, default=300, help="jobs of the latency run")
    parser.add_argument("--rate", type=float, default=50.0, help="latency run: jobs a second")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--sqlite-poll-seconds", type=float, default=1.0, help="Parley's poll on SQLite"
    )
    parser.add_argument(
        "--postgres-url",
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
        help="an admin URL on which the scratch databases are made (and dropped)",
    )
    args = parser.parse_args()
    command = "uv run python -m bench.jobs" + "".join(
        f" --{name.replace('_', '-')} {value:g}"
        for name, value, default in (
            ("jobs", args.jobs, 2000),
            ("latency_jobs", args.latency_jobs, 300),
            ("rate", args.rate, 50.0),
            ("rounds", args.rounds, 1),
            ("sqlite_poll_seconds", args.sqlite_poll_seconds, 1.0),
        )
        if value != default
    )
    workdir = Path(tempfile.mkdtemp(prefix="parley-bench-jobs-"))
    print(f"bench: working in {workdir}", file=sys.stderr)
    try:
        results = run_benchmark(
            workdir,
            args.postgres_url,
            jobs=args.jobs,
            latency_jobs=args.latency_jobs,
            rate=args.rate,
            rounds=args.rounds,
            sqlite_poll_seconds=args.sqlite_poll_seconds,
        )
    except BaseException:
        print(f"bench: logs kept in {workdir}", file=sys.stderr)
        raise
    checks = checks_of(results)
    rows = [
        {
            "target": check.name,
            "measured": check.measured,
            "limit": check.limit,
            "met": "—" if check.met is None else ("yes" if check.met else "**no**"),
        }
        for check in checks
    ]
    print("Target rows:\n")
    print(table(rows))
    print("## Background jobs\n")
    print(section(results, command=command).strip())
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
