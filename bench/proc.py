"""What a server process tree costs, read from `/proc`: CPU seconds (user + system, of every
process in the tree and of children already reaped) and resident memory."""

from __future__ import annotations

import os
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may hold spaces: split after its closing one.
    return text[text.rindex(")") + 2 :].split()


def tree(root: int) -> list[int]:
    """`root` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def cpu_seconds(root: int) -> float:
    """CPU time used so far by the tree under `root` (its reaped children included)."""
    ticks = 0
    for pid in tree(root):
        fields = _stat_fields(pid)
        if fields is None:
            continue
        # utime, stime, cutime, cstime are fields 14-17 of stat (11-14 after the name).
        ticks += sum(int(value) for value in fields[11:15])
    return ticks / CLOCK_TICKS


def rss_bytes(root: int) -> int:
    """Resident memory of the tree under `root`."""
    total = 0
    for pid in tree(root):
        try:
            resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        total += resident * PAGE_SIZE
    return total


def open_files(pid: int) -> int:
    """How many file descriptors the process holds."""
    try:
        return sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return 0


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU time used so far by each thread of process `pid`, by thread id (the main thread's id
    is `pid`)."""
    found: dict[int, float] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            text = (task / "stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        found[int(task.name)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    return found


def wait_until_idle(
    root: int, *, below: float = 0.02, window: float = 1.0, timeout: float = 120.0
) -> float:
    """Wait until the tree under `root` uses less than `below` of a core over `window` seconds
    (a server that has just started is still importing in the background). Returns the seconds
    waited."""
    started = time.monotonic()
    previous = cpu_seconds(root)
    while time.monotonic() - started < timeout:
        time.sleep(window)
        current = cpu_seconds(root)
        if (current - previous) / window < below:
            break
        previous = current
    return time.monotonic() - started
