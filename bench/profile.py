"""`uv run python -m bench.profile {v1,chat}`: profile Parley's process under one benchmark load
with py-spy, to see what a missed target's time goes to (`python -m bench` embeds these profiles
in BENCHMARKS.md for the targets it misses).

Starts the fake upstream and Parley on loopback as the benchmark does, waits until Parley is idle
(its background imports done), then records py-spy (`--format raw`, collapsed stacks; `--gil`,
so only the thread running Python) while the load runs. Reports the CPU seconds per 1,000 requests
(from `/proc`: the event loop's thread and the rest, such as aiosqlite's threads running SQLite
with the GIL released), the samples by library (each sample counted once, for the innermost frame
of a known library) and the heaviest of Parley's own frames including what they call.
SQLAlchemy's greenlets show as stacks of their own. py-spy is not a project dependency:
`pip install py-spy` (it reads the process from outside, which needs the ptrace permission root
has).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.load import run_load
from bench.pg import postgres_database
from bench.proc import cpu_seconds, thread_cpu_seconds, wait_until_idle
from bench.scenarios import completion_body, make_chats, run, run_turns
from bench.servers import (
    PARLEY_MODEL,
    create_bench_user,
    parley_environment,
    sign_in,
    start_parley,
    start_upstream,
)

DEFAULT_POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"

# A sample goes to the innermost frame whose file is in one of these (first match wins).
LIBRARIES = (
    ("parley/", "Parley's own code"),
    ("sqlalchemy/", "SQLAlchemy"),
    ("aiosqlite/", "aiosqlite (driver)"),
    ("asyncpg/", "asyncpg (driver)"),
    ("pydantic_ai/", "Pydantic AI"),
    ("openai/", "openai SDK"),
    ("httpx2/", "httpx2 (HTTP client)"),
    ("httpcore2/", "httpx2 (HTTP client)"),
    ("aiohttp/", "aiohttp (HTTP client)"),
    ("multidict/", "aiohttp (HTTP client)"),
    ("yarl/", "aiohttp (HTTP client)"),
    ("opentelemetry/", "OpenTelemetry"),
    ("uvicorn/", "uvicorn"),
    ("fastapi/", "FastAPI"),
    ("starlette/", "Starlette"),
    ("pydantic/", "pydantic"),
    ("pydantic_core/", "pydantic"),
    ("anyio/", "anyio"),
    ("asyncio/", "asyncio (event loop)"),
    ("logging/", "logging"),
    ("json/", "json"),
)


def available() -> bool:
    """Whether py-spy is on the PATH."""
    return shutil.which("py-spy") is not None


def _samples(collapsed: Path) -> list[tuple[list[str], int]]:
    found = []
    for line in collapsed.read_text(encoding="utf-8").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if stack:
            found.append(([frame for frame in stack.split(";") if frame], int(count_text)))
    return found


def _library(frame: str) -> str | None:
    for marker, name in LIBRARIES:
        if f"({marker}" in frame:
            return name
    return None


def by_library(collapsed: Path) -> list[tuple[str, float]]:
    """Each library's share of the samples, heaviest first."""
    counts: Counter[str] = Counter()
    total = 0
    for frames, count in _samples(collapsed):
        total += count
        owner = next((name for f in reversed(frames) if (name := _library(f))), "other")
        counts[owner] += count
    return [(name, count / total) for name, count in counts.most_common()] if total else []


def heaviest(collapsed: Path, *, top: int, marker: str = "(parley/") -> list[tuple[str, float]]:
    """The frames holding `marker` with the largest share of samples, callees included."""
    inclusive: Counter[str] = Counter()
    total = 0
    for frames, count in _samples(collapsed):
        total += count
        for frame in set(frames):
            if marker in frame and "parley/cli.py" not in frame and "__main__" not in frame:
                inclusive[frame] += count
    return [(frame, count / total) for frame, count in inclusive.most_common(top)] if total else []


@dataclass
class Profile:
    """What one profiled load measured."""

    scenario: str
    database: str
    concurrency: int
    requests: int
    cpu_per_1000: float
    event_loop_share: float
    libraries: list[tuple[str, float]]
    frames: list[tuple[str, float]]

    def markdown(self) -> str:
        """The profile as BENCHMARKS.md shows it."""
        lines = [
            f"{self.requests} requests at concurrency {self.concurrency} on {self.database}: "
            f"{self.cpu_per_1000:.2f} CPU-s per 1,000, {self.event_loop_share:.0%} of it on the "
            "event loop's thread. py-spy samples (`--gil`) by library, each sample counted for "
            "the innermost frame of a listed library:",
            "",
            "| library | share |",
            "| --- | --- |",
        ]
        lines += [f"| {name} | {share:.1%} |" for name, share in self.libraries if share >= 0.005]
        lines += [
            "",
            "Parley's heaviest frames, with what they call:",
            "",
            "| frame | share |",
            "| --- | --- |",
        ]
        lines += [f"| `{frame}` | {share:.1%} |" for frame, share in self.frames]
        return "\n".join(lines) + "\n"


def _record(pid: int, output: Path, seconds: int) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    command = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--rate", "250"]
    command += ["--duration", str(seconds), "--gil", "--output", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # noqa: S603


def profile(
    scenario: str,
    *,
    database: str = "sqlite",
    seconds: int = 15,
    concurrency: int = 16,
    top: int = 25,
    postgres_url: str = DEFAULT_POSTGRES_URL,
    keep: Path | None = None,
) -> Profile:
    """Profile `scenario` (`v1` or `chat`) under load; `keep` saves the collapsed stacks."""
    workdir = Path(tempfile.mkdtemp(prefix="parley-profile-"))
    logs = workdir / "logs"
    logs.mkdir()
    upstream = start_upstream(logs)
    scratch = (
        postgres_database(postgres_url, f"parley_profile_{uuid.uuid4().hex[:8]}")
        if database == "postgresql"
        else None
    )
    try:
        url = scratch.__enter__() if scratch is not None else None
        env = parley_environment(workdir / "data", upstream, url)
        create_bench_user(env)
        parley = start_parley(logs, env)
        try:
            keys = sign_in(parley)
            wait_until_idle(parley.pid)
            collapsed = workdir / "profile.txt"
            if scenario == "v1":
                body = completion_body(PARLEY_MODEL)
                headers = {"Authorization": f"Bearer {keys['api_key']}"}
                target = parley.url + "/v1/chat/completions"

                def request(_number: int) -> tuple[str, str, dict[str, Any], dict[str, str]]:
                    return "POST", target, body, headers

                run(run_load(request, total=100, concurrency=8))  # warm-up
                total = seconds * 120  # enough to outlast the recording
                loop_before, before = thread_cpu_seconds(parley.pid), cpu_seconds(parley.pid)
                recorder = _record(parley.pid, collapsed, seconds)
                result = run(run_load(request, total=total, concurrency=concurrency))
            else:
                token = keys["access_token"]
                run(run_turns(parley, token, run(make_chats(parley, token, 30)), concurrency=8))
                chats = run(make_chats(parley, token, seconds * 15))
                loop_before, before = thread_cpu_seconds(parley.pid), cpu_seconds(parley.pid)
                recorder = _record(parley.pid, collapsed, seconds)
                result = run(run_turns(parley, token, chats, concurrency=concurrency))
            process = cpu_seconds(parley.pid) - before
            loop = thread_cpu_seconds(parley.pid).get(parley.pid, 0.0)
            loop -= loop_before.get(parley.pid, 0.0)
            recorder.wait(timeout=seconds + 60)
            if keep is not None:
                shutil.copy(collapsed, keep)
            return Profile(
                scenario=scenario,
                database="PostgreSQL" if database == "postgresql" else "SQLite",
                concurrency=concurrency,
                requests=result.succeeded,
                cpu_per_1000=process / max(result.succeeded, 1) * 1000,
                event_loop_share=loop / process if process else 0.0,
                libraries=by_library(collapsed),
                frames=heaviest(collapsed, top=top),
            )
        finally:
            parley.stop()
    finally:
        if scratch is not None:
            scratch.__exit__(None, None, None)
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """Profile one scenario and print the result."""
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("scenario", choices=["v1", "chat"])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--keep", type=Path, help="save the collapsed stacks here")
    args = parser.parse_args(argv)
    result = profile(
        args.scenario,
        database=args.database,
        seconds=args.seconds,
        concurrency=args.concurrency,
        top=args.top,
        postgres_url=args.postgres_url,
        keep=args.keep,
    )
    print(result.markdown())


if __name__ == "__main__":
    main()
