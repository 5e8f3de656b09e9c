"""`uv run python -m bench.profile {v1,chat}`: profile Parley's process under one benchmark load
with py-spy, to see what a missed target's time goes to.

Starts the fake upstream and Parley on loopback as the benchmark does, waits until Parley is idle
(its background imports done), then records py-spy (`--format raw`, collapsed stacks; `--gil`,
so only the thread running Python) while the load runs. Prints the CPU seconds per 1,000 requests
(from `/proc`: the event loop's thread and the rest, such as aiosqlite's threads running SQLite
with the GIL released) and the heaviest frames, by own time and including callees. py-spy is not
a project dependency: `pip install py-spy` (it reads the process from outside, which needs the
ptrace permission root has). SQLAlchemy's greenlets show as stacks of their own.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from bench.load import run_load
from bench.pg import postgres_database
from bench.proc import cpu_seconds, thread_cpu_seconds, wait_until_idle
from bench.scenarios import chat_turns, completion_body, run
from bench.servers import (
    PARLEY_MODEL,
    create_bench_user,
    parley_environment,
    sign_in,
    start_parley,
    start_upstream,
)


def summarise(collapsed: Path, *, top: int) -> str:
    """The heaviest frames of a collapsed-stack file: own time and inclusive time, in percent."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text(encoding="utf-8").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = [frame for frame in stack.split(";") if frame]
        if frames:
            own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "no samples"
    lines = [f"{total} samples", "", "own time:"]
    lines += [f"  {count / total:6.1%}  {frame}" for frame, count in own.most_common(top)]
    lines += ["", "including callees:"]
    lines += [f"  {count / total:6.1%}  {frame}" for frame, count in inclusive.most_common(top)]
    return "\n".join(lines)


def _record(pid: int, output: Path, seconds: int) -> subprocess.Popen[bytes]:
    py_spy = shutil.which("py-spy")
    if py_spy is None:
        raise SystemExit("py-spy is not installed: pip install py-spy")
    return subprocess.Popen(  # noqa: S603
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            "250",
            "--duration",
            str(seconds),
            "--gil",
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main(argv: list[str] | None = None) -> None:
    """Profile one scenario and print the summary."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenario", choices=["v1", "chat"])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument(
        "--postgres-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
    )
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--output", type=Path, default=Path("bench-profile.txt"))
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="parley-profile-"))
    logs = workdir / "logs"
    logs.mkdir()
    upstream = start_upstream(logs)
    database = (
        postgres_database(args.postgres_url, f"parley_profile_{uuid.uuid4().hex[:8]}")
        if args.database == "postgresql"
        else None
    )
    try:
        url = database.__enter__() if database is not None else None
        env = parley_environment(workdir / "data", upstream, url)
        create_bench_user(env)
        parley = start_parley(logs, env)
        try:
            keys = sign_in(parley)
            wait_until_idle(parley.pid)
            collapsed = workdir / "profile.txt"
            if args.scenario == "v1":
                body = completion_body(PARLEY_MODEL)
                headers = {"Authorization": f"Bearer {keys['api_key']}"}
                target = parley.url + "/v1/chat/completions"

                def request(_number: int) -> tuple[str, str, dict[str, Any], dict[str, str]]:
                    return "POST", target, body, headers

                run(run_load(request, total=100, concurrency=8))
                before, process_before = thread_cpu_seconds(parley.pid), cpu_seconds(parley.pid)
                recorder = _record(parley.pid, collapsed, args.seconds)
                # Enough requests to outlast the recording.
                result = run(
                    run_load(request, total=args.seconds * 120, concurrency=args.concurrency)
                )
                completed = result.succeeded
            else:
                run(chat_turns(parley, keys["access_token"], total=50, concurrency=8))
                before, process_before = thread_cpu_seconds(parley.pid), cpu_seconds(parley.pid)
                recorder = _record(parley.pid, collapsed, args.seconds)
                point = run(
                    chat_turns(
                        parley,
                        keys["access_token"],
                        total=args.seconds * 15,
                        concurrency=args.concurrency,
                    )
                )
                completed = point.result.succeeded
            recorder.wait(timeout=args.seconds + 60)
            process = cpu_seconds(parley.pid) - process_before
            main_thread = thread_cpu_seconds(parley.pid).get(parley.pid, 0.0) - before.get(
                parley.pid, 0.0
            )
            summary = (
                f"{completed} requests, {process / max(completed, 1) * 1000:.2f} CPU-s per 1,000 "
                f"(the event-loop thread {main_thread:.1f} s, other threads "
                f"{process - main_thread:.1f} s)\n\n" + summarise(collapsed, top=args.top)
            )
            shutil.copy(collapsed, args.output.with_suffix(".collapsed"))
            args.output.write_text(summary + "\n", encoding="utf-8")
            print(summary)
        finally:
            parley.stop()
    finally:
        if database is not None:
            database.__exit__(None, None, None)
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
