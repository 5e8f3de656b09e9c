"""`uv run python -m bench`: start everything on loopback, run the matrix, write BENCHMARKS.md.

Every gateway point is measured against five targets in the same run — the fake upstream
directly, the minimal relays on aiohttp and on httpx, Portkey's gateway and Parley — interleaved
at each concurrency, so each figure stands beside its floor and its peer measured under the same
conditions. CPU is the server process tree's user and
system time from `/proc`, per 1,000 completed requests.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench import growth, knowledge, scenarios
from bench import jobs as bench_jobs
from bench import profile as bench_profile
from bench.load import percentile
from bench.pg import postgres_database
from bench.proc import rss_bytes, wait_until_idle
from bench.report import Check, reference_loop_seconds, table, write
from bench.scenarios import AIOHTTP_RELAY, PARLEY_V1, PORTKEY, Point
from bench.servers import (
    create_bench_user,
    parley_environment,
    sign_in,
    start_parley,
    start_portkey,
    start_relay,
    start_upstream,
)

MB = 1024 * 1024
RELAYS = ("aiohttp", "httpx")
# Written by hand after reading the profiles: where the time goes, what was fixed, what is next.
FINDINGS = Path(__file__).with_name("findings.md")
PREAMBLE = """
What Parley costs beyond the model: the CPU, latency and memory of its gateway and chat turns,
measured beside the floor of forwarding a stream in Python and beside Portkey's open-source
gateway (Node.js), how its reads grow with history, and its background-jobs queue beside
procrastinate. `uv run python -m bench` (about 30 minutes on 2 cores; `--quick` for a smaller
run; Portkey's gateway installs from npm into `bench/portkey` and procrastinate from PyPI into
`bench/procrastinate/.venv` on the first run) starts a fake OpenAI-compatible upstream (64-token
replies, no model delay), the minimal relays on aiohttp and on httpx, Portkey's gateway and
Parley on loopback, runs every point and rewrites this file. The method and the scenarios are in
[docs/benchmarks.md](docs/benchmarks.md).
"""


def _ratio(value: float | None, floor: float | None) -> float:
    if value is None or floor is None or floor == 0:
        return math.nan
    return value / floor


def profiles_section(checks: list[Check], *, seconds: int, url: str) -> str:
    """A py-spy profile of each CPU target this run missed (`bench.profile`), or why there is
    none."""
    wanted = []
    if any(check.name.startswith("/v1 streaming CPU") and not check.met for check in checks):
        wanted.append(("v1", "sqlite", "`/v1/chat/completions` streamed, SQLite"))
    if any(check.name.startswith("chat turn CPU") and not check.met for check in checks):
        wanted.append(("chat", "sqlite", "Chat turns, SQLite"))
        wanted.append(("chat", "postgresql", "Chat turns, PostgreSQL"))
    if not wanted:
        return "Every CPU target was met: no profile.\n"
    if not bench_profile.available():
        return (
            "py-spy is not installed, so this run made no profile: `pip install py-spy`, then\n"
            "`uv run python -m bench.profile v1` (or `chat`).\n"
        )
    parts = []
    for scenario, database, title in wanted:
        print(f"bench: profiling {scenario} on {database}", file=sys.stderr)
        result = bench_profile.profile(
            scenario, database=database, seconds=seconds, postgres_url=url
        )
        parts.append(f"### {title}\n\n{result.markdown()}")
    return "\n".join(parts)


def _find(points: list[Point], target: str, concurrency: int) -> Point:
    return next(p for p in points if p.target == target and p.concurrency == concurrency)


def _cpu_check(parley: Point, floor: Point, name: str, limit: float) -> Check:
    ratio = _ratio(parley.cpu_per_1000, floor.cpu_per_1000)
    return Check(
        f"/v1 streaming CPU per 1,000 vs {name} (c={parley.concurrency})",
        f"{ratio:.2f}x ({parley.cpu_per_1000 or math.nan:.2f} s vs "
        f"{floor.cpu_per_1000 or math.nan:.2f} s)",
        f"≤ {limit:g}x",
        ratio <= limit,
    )


def gateway_section(
    points: list[Point], concurrencies: list[int], floor_concurrency: int, streams: int
) -> tuple[list[Check], str]:
    """The gateway's checks and its table: Parley at or below Portkey's CPU at every
    concurrency, at most twice the aiohttp relay's at `floor_concurrency`, its TTFT at c=1 within
    a millisecond of that relay's, and `streams` concurrent streams without a failure."""
    checks = [
        _cpu_check(
            _find(points, PARLEY_V1, concurrency),
            _find(points, PORTKEY, concurrency),
            "Portkey",
            1,
        )
        for concurrency in concurrencies
    ]
    checks.append(
        _cpu_check(
            _find(points, PARLEY_V1, floor_concurrency),
            _find(points, AIOHTTP_RELAY, floor_concurrency),
            "the aiohttp relay",
            2,
        )
    )
    relay_1 = _find(points, AIOHTTP_RELAY, 1)
    parley_1 = _find(points, PARLEY_V1, 1)
    ttft_gap = percentile(parley_1.result.ttft_ms, 0.5) - percentile(relay_1.result.ttft_ms, 0.5)
    many = _find(points, PARLEY_V1, streams)
    checks += [
        Check(
            "/v1 TTFT p50 at c=1, above the aiohttp relay's",
            f"{ttft_gap:+.2f} ms",
            "≤ +1 ms",
            ttft_gap <= 1,
        ),
        Check(
            f"{streams} concurrent /v1 streams",
            f"{many.result.succeeded} of {many.result.requests} complete, "
            f"failures: {dict(many.result.failures) or 'none'}",
            "no failure",
            not many.result.failures and many.result.succeeded == many.result.requests,
        ),
    ]
    return checks, table([point.row() for point in points])


def main() -> None:
    """Run the benchmarks and write the report."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--output", type=Path, default=Path("BENCHMARKS.md"))
    parser.add_argument(
        "--postgres-url",
        default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres",
        help="an admin URL on which a scratch database is made (and dropped)",
    )
    parser.add_argument("--skip-growth", action="store_true", help="skip the history growth runs")
    parser.add_argument(
        "--skip-jobs", action="store_true", help="skip the background-jobs queue (bench.jobs)"
    )
    parser.add_argument(
        "--skip-profiles", action="store_true", help="no py-spy profiles of missed CPU targets"
    )
    args = parser.parse_args()
    total = 300 if args.quick else 2000
    turns = 200 if args.quick else 1000
    streams = 200
    cpu_concurrency = 16  # chat turns
    gateway_concurrencies = [1, 50, streams]
    command = "uv run python -m bench" + (" --quick" if args.quick else "")
    started = time.perf_counter()
    reference = reference_loop_seconds()
    workdir = Path(tempfile.mkdtemp(prefix="parley-bench-"))
    logs = workdir / "logs"
    logs.mkdir()
    checks: list[Check] = []
    sections: list[tuple[str, str]] = []
    print(f"bench: working in {workdir}", file=sys.stderr)
    try:
        # -- start-up and idle memory ---------------------------------------------------------
        upstream = start_upstream(logs)
        relays = {client: start_relay(logs, upstream, client=client) for client in RELAYS}
        portkey = start_portkey(logs)
        try:
            env = parley_environment(workdir / "sqlite", upstream, None)
            create_bench_user(env)
            first = start_parley(logs, env, name="parley-first-start")
            first.stop()
            parley = start_parley(logs, env)
            idle = scenarios.idle_rss(parley)
            checks.append(
                Check(
                    "start to /health/live",
                    f"{parley.ready_seconds:.2f} s",
                    "≤ 3 s",
                    parley.ready_seconds <= 3,
                )
            )
            checks.append(
                Check(
                    "idle RSS (an OpenAI-compatible provider configured)",
                    f"{idle / MB:.0f} MB",
                    "≤ 150 MB",
                    idle <= 150 * MB,
                )
            )
            sections.append(
                (
                    "Start-up",
                    table(
                        [
                            {
                                "start": "first (migrates a new SQLite file)",
                                "to /health/live": f"{first.ready_seconds:.2f} s",
                            },
                            {
                                "start": "again (schema up to date)",
                                "to /health/live": f"{parley.ready_seconds:.2f} s",
                            },
                        ]
                    )
                    + f"\nIdle RSS after start: {idle / MB:.0f} MB.\n",
                )
            )
            try:
                credentials = sign_in(parley)
                wait_until_idle(parley.pid)  # no background import in the measured runs
                targets = scenarios.gateway_targets(
                    upstream, parley, credentials["api_key"], relays=relays, portkey=portkey
                )
                points = asyncio.run(
                    scenarios.gateway_matrix(
                        targets, total=total, concurrencies=gateway_concurrencies, warmup=50
                    )
                )
                gateway_checks, gateway_table = gateway_section(
                    points, gateway_concurrencies, 50, streams
                )
                checks.extend(gateway_checks)
                sections.append(("/v1/chat/completions, streamed (64 tokens)", gateway_table))
                chat_sqlite = asyncio.run(
                    scenarios.chat_turns(
                        parley,
                        credentials["access_token"],
                        total=turns,
                        concurrency=cpu_concurrency,
                    )
                )
                after_rss = rss_bytes(parley.pid)
            finally:
                parley.stop()
            with postgres_database(
                args.postgres_url, f"parley_bench_{uuid.uuid4().hex[:8]}"
            ) as pg_url:
                pg_env = parley_environment(workdir / "postgres", upstream, pg_url)
                create_bench_user(pg_env)
                parley_pg = start_parley(logs, pg_env, name="parley-postgres")
                try:
                    pg_credentials = sign_in(parley_pg)
                    wait_until_idle(parley_pg.pid)
                    chat_pg = asyncio.run(
                        scenarios.chat_turns(
                            parley_pg,
                            pg_credentials["access_token"],
                            total=turns,
                            concurrency=cpu_concurrency,
                        )
                    )
                finally:
                    parley_pg.stop()
            sqlite_cpu = chat_sqlite.cpu_per_1000 or math.inf
            checks.append(
                Check(
                    "chat turn CPU per 1,000 (SQLite)",
                    f"{sqlite_cpu:.2f} s (PostgreSQL: {chat_pg.cpu_per_1000 or math.nan:.2f} s)",
                    "≤ 10 s",
                    sqlite_cpu <= 10,
                )
            )
            chat_rows = [
                chat_sqlite.row() | {"database": "SQLite"},
                chat_pg.row() | {"database": "PostgreSQL"},
            ]
            sections.append(
                (
                    "Chat turns (persisted, streamed, 64 tokens)",
                    table(chat_rows)
                    + f"\nRSS after the gateway and chat runs: {after_rss / MB:.0f} MB.\n",
                )
            )
        finally:
            for relay in relays.values():
                relay.stop()
            portkey.stop()
            upstream.stop()
        if not args.skip_growth:
            growth_checks, growth_body = growth.run(workdir, args.postgres_url, quick=args.quick)
            checks.extend(growth_checks)
            sections.append(("Cost that does not grow with history", growth_body))
        if not args.skip_jobs:
            jobs_checks, jobs_body = bench_jobs.run(
                workdir, args.postgres_url, quick=args.quick, command=command
            )
            checks.extend(jobs_checks)
            sections.append(("Background jobs", jobs_body))
        if not args.skip_profiles:
            sections.append(
                (
                    "Profiles of the missed CPU targets",
                    profiles_section(
                        checks, seconds=10 if args.quick else 20, url=args.postgres_url
                    ),
                )
            )
        sections.append(("What the time goes to, and the plan", FINDINGS.read_text("utf-8")))
        knowledge.add(checks, sections, workdir, args.postgres_url, args.quick)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    write(
        args.output,
        checks=checks,
        sections=sections,
        command=command,
        seconds=time.perf_counter() - started,
        preamble=PREAMBLE,
        reference_seconds=reference,
    )
    print(f"bench: wrote {args.output}", file=sys.stderr)
