"""`trim_heap` gives the C heap's freed pages back: RSS drops after a burst of C allocations is
freed (glibc keeps them otherwise, as it does for what the start-up imports leave behind)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.apps import running_app
from tests.fixtures.settings import make_settings

BURST = """
import ctypes, os, sys
from parley.core.memory import trim_heap

def rss_mb():
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

# 100,000 blocks of 2,000 bytes come from malloc's heap (below its mmap threshold); keeping the
# last one alive pins the top of the heap, so glibc cannot shrink it by itself.
blocks = [ctypes.create_string_buffer(2000) for _ in range(100_000)]
keep = blocks[-1]
del blocks[:-1]
before = rss_mb()
released = trim_heap()
after = rss_mb()
print(released, round(before), round(after))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_trim_heap_returns_freed_memory() -> None:
    result = subprocess.run(
        [sys.executable, "-c", BURST], capture_output=True, text=True, check=True, timeout=60
    )
    released, before, after = result.stdout.split()
    assert released == "True"
    assert int(before) - int(after) > 100, result.stdout  # of ~200 MB freed


@pytest.mark.parametrize(("interval", "running"), [(0.05, True), (0, False)])
async def test_the_app_trims_periodically_unless_disabled(
    database_url: str, tmp_path: Path, interval: float, running: bool
) -> None:
    settings = make_settings(database_url, tmp_path, memory_trim_interval_seconds=interval)
    others = asyncio.all_tasks()  # the session's app trims too
    async with running_app(settings):
        await asyncio.sleep(0.2)  # a few periods
        trimming = [
            task for task in asyncio.all_tasks() - others if task.get_name() == "memory-trim"
        ]
        assert bool(trimming) == running
        assert not any(task.done() for task in trimming)  # it survived its first trims
    assert all(task.done() for task in trimming)  # and stops with the app
