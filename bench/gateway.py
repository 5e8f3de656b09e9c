"""`uv run python -m bench.gateway`: the `/v1` streaming matrix alone — the fake upstream
directly, the aiohttp and httpx relays, Portkey's gateway and Parley, interleaved at each
concurrency for `--rounds` rounds — printing CPU-seconds per 1,000 streams of each target and
Parley's ratio to Portkey and to the aiohttp relay. For working on the gateway; `python -m bench`
runs the same matrix once and writes BENCHMARKS.md. Loopback only; stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

from bench.load import percentile
from bench.proc import wait_until_idle
from bench.scenarios import AIOHTTP_RELAY, PARLEY_V1, PORTKEY, Point, gateway_targets, measure
from bench.servers import (
    Server,
    create_bench_user,
    parley_environment,
    sign_in,
    start_parley,
    start_portkey,
    start_relay,
    start_upstream,
)


def _summary(points: list[Point], concurrency: int) -> str:
    by_target: dict[str, list[float]] = {}
    ttft: dict[str, list[float]] = {}
    for point in points:
        if point.concurrency == concurrency and point.cpu_per_1000 is not None:
            by_target.setdefault(point.target, []).append(point.cpu_per_1000)
            ttft.setdefault(point.target, []).append(percentile(point.result.ttft_ms, 0.5))
    lines = [f"c={concurrency}:"]
    for target, values in by_target.items():
        lines.append(
            f"  {target:20} CPU-s/1k median {statistics.median(values):6.2f} "
            f"({', '.join(f'{v:.2f}' for v in values)}); "
            f"ttft p50 {statistics.median(ttft[target]):.2f} ms"
        )
    parley = by_target.get(PARLEY_V1)
    for floor in (PORTKEY, AIOHTTP_RELAY):
        if parley and floor in by_target:
            ratios = [p / f for p, f in zip(parley, by_target[floor], strict=False)]
            lines.append(f"  Parley / {floor}: median {statistics.median(ratios):.2f}")
    return "\n".join(lines)


async def _matrix(
    servers: dict[str, Server], api_key: str, args: argparse.Namespace
) -> list[Point]:
    targets = gateway_targets(
        servers["upstream"],
        servers["parley"],
        api_key,
        relays={"aiohttp": servers["relay-aiohttp"], "httpx": servers["relay-httpx"]},
        portkey=servers.get("portkey"),
    )
    if args.only:
        targets = [t for t in targets if any(name in t.name for name in args.only)]
    for target in targets:
        await measure(target, total=100, concurrency=8)
    points = []
    for round_number in range(args.rounds):
        order = targets if round_number % 2 == 0 else targets[::-1]
        for concurrency in args.concurrency:
            for target in order:
                point = await measure(
                    target, total=max(args.streams, concurrency), concurrency=concurrency
                )
                print(
                    f"round {round_number + 1} c={concurrency} {target.name}: "
                    f"{point.cpu_per_1000 or float('nan'):.2f} CPU-s/1k, "
                    f"failures {dict(point.result.failures) or 'none'}",
                    file=sys.stderr,
                )
                points.append(point)
    return points


def main() -> None:
    """Start the targets, run the rounds, print the summary."""
    parser = argparse.ArgumentParser(prog="python -m bench.gateway", description=__doc__)
    parser.add_argument("--streams", type=int, default=1000, help="streams per point")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--concurrency", type=lambda text: [int(c) for c in text.split(",")], default=[1, 50, 200]
    )
    parser.add_argument("--no-portkey", action="store_true")
    parser.add_argument("--only", nargs="*", help="targets whose name holds one of these")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="parley-bench-gateway-"))
    logs = workdir / "logs"
    logs.mkdir()
    servers: dict[str, Server] = {}
    try:
        servers["upstream"] = start_upstream(logs)
        for client in ("aiohttp", "httpx"):
            servers[f"relay-{client}"] = start_relay(logs, servers["upstream"], client=client)
        if not args.no_portkey:
            servers["portkey"] = start_portkey(logs)
        env = parley_environment(workdir / "sqlite", servers["upstream"], None)
        create_bench_user(env)
        servers["parley"] = start_parley(logs, env)
        credentials = sign_in(servers["parley"])
        wait_until_idle(servers["parley"].pid)
        points = asyncio.run(_matrix(servers, credentials["api_key"], args))
    finally:
        for server in servers.values():
            server.stop()
    for concurrency in args.concurrency:
        print(_summary(points, concurrency))
    print(f"logs: {logs}", file=sys.stderr)


if __name__ == "__main__":
    main()
