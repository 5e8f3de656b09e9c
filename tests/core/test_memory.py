"""`trim_heap` gives the C heap's freed pages back: RSS drops after a burst of C allocations is
freed (glibc keeps them otherwise, as it does for what the start-up imports leave behind)."""

from __future__ import annotations

import subprocess
import sys

import pytest

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
