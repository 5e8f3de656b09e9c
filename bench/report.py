"""BENCHMARKS.md: the figures of one run, the targets they are checked against, and how the run
was made."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


@dataclass
class Check:
    """One target: what was measured against its limit."""

    name: str
    measured: str
    limit: str
    met: bool | None  # None: not measured in this run


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table of rows sharing their keys."""
    if not rows:
        return "_none_\n"
    headers = list(rows[0])
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join("---" for _ in headers) + " |"]
    lines.extend("| " + " | ".join(str(row.get(key, "")) for key in headers) + " |" for row in rows)
    return "\n".join(lines) + "\n"


def machine() -> str:
    """What the run ran on."""
    cpus = Path("/proc/cpuinfo").read_text().count("processor\t:")
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    system = f"{platform.system()} {platform.release()}"
    return f"{cpus} cores ({model}), Python {platform.python_version()}, {system}"


def reference_loop_seconds(iterations: int = 10_000_000) -> float:
    """The machine's single-thread Python speed: the best of three runs of a loop of additions.
    Absolute figures (CPU seconds, start-up) scale with it; the ratios to the relay do not."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for number in range(iterations):
            total += number
        best = min(best, time.perf_counter() - started)
    return best


def write(
    path: Path,
    *,
    checks: list[Check],
    sections: list[tuple[str, str]],
    command: str,
    seconds: float,
    preamble: str,
    reference_seconds: float | None = None,
) -> None:
    """Write the report."""
    met = sum(1 for check in checks if check.met)
    measured = sum(1 for check in checks if check.met is not None)
    lines = [
        "# Benchmarks",
        "",
        preamble.strip(),
        "",
        f"Run on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}, with `{command}` "
        f"({seconds / 60:.1f} minutes). Targets met: **{met} of {measured}**.",
        "",
        *(
            [
                f"This machine's speed: a loop of 10 million Python additions takes "
                f"{reference_seconds:.2f} s (best of three). Absolute figures scale with it; "
                "the ratios to the relay measured beside them do not.",
                "",
            ]
            if reference_seconds is not None
            else []
        ),
        "## Targets",
        "",
        table(
            [
                {
                    "target": check.name,
                    "measured": check.measured,
                    "limit": check.limit,
                    "met": "—" if check.met is None else ("yes" if check.met else "**no**"),
                }
                for check in checks
            ]
        ),
    ]
    for title, body in sections:
        lines.extend([f"## {title}", "", body.strip(), ""])
    path.write_text("\n".join(lines), encoding="utf-8")
