"""`uv run python -m bench.ab --base DIR`: interleaved A/B rounds of Parley's two hot paths, the
checkout at `DIR` (A, e.g. a `git worktree` of the previous commit with its own synced `.venv`)
against this one (B), on the same fake upstream, each server on a SQLite database of its own.

Each round measures, for A then B (the order alternates from round to round), the server's CPU
for `--streams` streamed `/v1` completions at `--concurrency` and for `--turns` chat turns at the
same concurrency, and prints the CPU-seconds per 1,000 of each with the ratio B/A; the medians of
the ratios come last. Loopback only; stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

from bench.scenarios import Target, chat_turns, measure
from bench.servers import (
    PARLEY_MODEL,
    Server,
    create_bench_user,
    free_port,
    parley_environment,
    sign_in,
    start,
    start_upstream,
)


def _python(tree: Path) -> str:
    return str(tree / ".venv" / "bin" / "python")


def _start_parley(tree: Path, logs: Path, data: Path, upstream: Server, name: str) -> Server:
    env = parley_environment(data, upstream, None)
    python = _python(tree)
    create_bench_user(env, python=python)
    port = free_port()
    command = [python, "-m", "parley", "serve", "--port", str(port), "--no-migrate"]
    return start(name, command, port, "/health/live", env, logs)


async def _round(
    server: Server, credentials: dict[str, str], args: argparse.Namespace
) -> tuple[float, float]:
    target = Target(
        server.name,
        server.url + "/v1/chat/completions",
        PARLEY_MODEL,
        {"Authorization": f"Bearer {credentials['api_key']}"},
        server,
    )
    v1 = await measure(target, total=args.streams, concurrency=args.concurrency)
    turns = await chat_turns(
        server, credentials["access_token"], total=args.turns, concurrency=args.concurrency
    )
    failures = v1.result.failures + turns.result.failures
    if failures:
        # Reported, not fatal: a loaded machine can push SQLite's write waits past their limit
        # (503); the pair is then less comparable, and the line says why.
        print(f"  {server.name}: {dict(failures)} failed in this round", flush=True)
    if v1.cpu_per_1000 is None or turns.cpu_per_1000 is None:
        raise RuntimeError(f"{server.name}: its CPU time could not be read")
    return v1.cpu_per_1000, turns.cpu_per_1000


def main() -> None:
    """Run the rounds and print the pairs."""
    parser = argparse.ArgumentParser(prog="python -m bench.ab", description=__doc__)
    parser.add_argument("--base", type=Path, required=True, help="checkout A (with .venv)")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    here = Path(__file__).resolve().parent.parent
    with tempfile.TemporaryDirectory(prefix="parley-ab-") as scratch:
        root = Path(scratch)
        upstream = start_upstream(root)
        servers: list[Server] = []
        try:
            a = _start_parley(args.base.resolve(), root, root / "a", upstream, "A")
            servers.append(a)
            b = _start_parley(here, root, root / "b", upstream, "B")
            servers.append(b)
            credentials = {server.name: sign_in(server) for server in servers}
            for server in servers:  # warm-up, outside the figures
                asyncio.run(_warm(server, credentials[server.name]))
            v1_ratios, turn_ratios = [], []
            print("round  /v1 A  /v1 B  B/A   |  turns A  turns B  B/A   (CPU-s per 1,000)")
            for number in range(args.rounds):
                order = servers if number % 2 == 0 else list(reversed(servers))
                figures = {s.name: asyncio.run(_round(s, credentials[s.name], args)) for s in order}
                (v1_a, turn_a), (v1_b, turn_b) = figures["A"], figures["B"]
                v1_ratios.append(v1_b / v1_a)
                turn_ratios.append(turn_b / turn_a)
                print(
                    f"{number + 1:5}  {v1_a:5.2f}  {v1_b:5.2f}  {v1_b / v1_a:5.3f} |  "
                    f"{turn_a:7.2f}  {turn_b:7.2f}  {turn_b / turn_a:5.3f}",
                    flush=True,
                )
            print(
                f"median B/A: /v1 {statistics.median(v1_ratios):.3f}, "
                f"chat turns {statistics.median(turn_ratios):.3f}"
            )
        finally:
            for server in servers:
                server.stop()
            upstream.stop()


async def _warm(server: Server, credentials: dict[str, str]) -> None:
    target = Target(
        server.name,
        server.url + "/v1/chat/completions",
        PARLEY_MODEL,
        {"Authorization": f"Bearer {credentials['api_key']}"},
        server,
    )
    await measure(target, total=200, concurrency=8)
    await chat_turns(server, credentials["access_token"], total=40, concurrency=8)


if __name__ == "__main__":
    main()
    sys.exit(0)
