"""`uv run python -m bench`: start everything on loopback, run the matrix, write BENCHMARKS.md.

Every gateway point is measured against three targets in the same run — the fake upstream
directly, the minimal relay, and Parley — interleaved at each concurrency, so each figure stands
beside its floor measured under the same conditions. CPU is the server process tree's user and
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

from bench import growth, scenarios
from bench import profile as bench_profile
from bench.load import percentile
from bench.pg import postgres_database
from bench.proc import rss_bytes, wait_until_idle
from bench.report import Check, reference_loop_seconds, table, write
from bench.scenarios import Point
from bench.servers import (
    create_bench_user,
    parley_environment,
    sign_in,
    start_parley,
    start_relay,
    start_upstream,
)

MB = 1024 * 1024
# Written by hand after reading the profiles: where the time goes, what was fixed, what is next.
FINDINGS = Path(__file__).with_name("findings.md")
PREAMBLE = """
What Parley costs beyond the model: the CPU, latency and memory of its gateway and chat turns,
measured against the floor of forwarding a stream in Python, and how its reads grow with history.
`uv run python -m bench` (about 25 minutes on 2 cores; `--quick` for a smaller run) starts a fake
OpenAI-compatible upstream (64-token replies, no model delay), a minimal relay and Parley on
loopback, runs every point and rewrites this file. The method and the scenarios are in
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


def gateway_section(
    points: list[Point], cpu_concurrency: int, streams: int
) -> tuple[list[Check], str]:
    """The gateway's checks and its table."""
    relay = _find(points, "minimal relay", cpu_concurrency)
    parley = _find(points, "Parley /v1", cpu_concurrency)
    ratio = _ratio(parley.cpu_per_1000, relay.cpu_per_1000)
    relay_1 = _find(points, "minimal relay", 1)
    parley_1 = _find(points, "Parley /v1", 1)
    ttft_gap = percentile(parley_1.result.ttft_ms, 0.5) - percentile(relay_1.result.ttft_ms, 0.5)
    many = _find(points, "Parley /v1", streams)
    checks = [
        Check(
            f"/v1 streaming CPU per 1,000 vs the relay (c={cpu_concurrency})",
            f"{ratio:.2f}x ({parley.cpu_per_1000:.2f} s vs {relay.cpu_per_1000:.2f} s)",
            "≤ 3x",
            ratio <= 3,
        ),
        Check(
            f"/v1 streaming CPU per 1,000 requests (c={cpu_concurrency})",
            f"{parley.cpu_per_1000:.2f} s",
            "≤ 7.6 s",
            (parley.cpu_per_1000 or math.inf) <= 7.6,
        ),
        Check(
            "/v1 TTFT p50 at c=1, above the relay's",
            f"{ttft_gap:+.2f} ms",
            "≤ +3 ms",
            ttft_gap <= 3,
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
        "--skip-profiles", action="store_true", help="no py-spy profiles of missed CPU targets"
    )
    args = parser.parse_args()
    total = 300 if args.quick else 2000
    turns = 200 if args.quick else 1000
    streams = 200
    cpu_concurrency = 16
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
        relay = start_relay(logs, upstream)
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
            checks.append(Check("idle RSS", f"{idle / MB:.0f} MB", "≤ 150 MB", idle <= 150 * MB))
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
                targets = scenarios.gateway_targets(upstream, relay, parley, credentials["api_key"])
                points = asyncio.run(
                    scenarios.gateway_matrix(
                        targets,
                        total=total,
                        concurrencies=[1, cpu_concurrency, streams],
                        warmup=50,
                    )
                )
                gateway_checks, gateway_table = gateway_section(points, cpu_concurrency, streams)
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
                    "≤ 20 s",
                    sqlite_cpu <= 20,
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
            relay.stop()
            upstream.stop()
        if not args.skip_growth:
            growth_checks, growth_body = growth.run(workdir, args.postgres_url, quick=args.quick)
            checks.extend(growth_checks)
            sections.append(("Cost that does not grow with history", growth_body))
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
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    command = "uv run python -m bench" + (" --quick" if args.quick else "")
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
