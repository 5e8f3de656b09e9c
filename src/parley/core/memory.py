"""Giving freed memory back to the operating system.

CPython returns small objects' arenas itself, but memory that C allocations freed stays in the C
library's heap, counted in the process's RSS, until the allocator trims it. glibc trims only the
top of its main heap on its own; `malloc_trim` releases every free page of every heap.
"""

from __future__ import annotations

import asyncio
import ctypes
import functools
import logging
from collections.abc import Callable

import anyio

logger = logging.getLogger(__name__)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own C library
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to call
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def trim_heap() -> bool:
    """Release the C heap's free pages (glibc's `malloc_trim(0)`); blocking, for a worker thread.

    Returns:
        Whether any memory was released (False also where the C library has no such call).
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    released = bool(trim(0))
    logger.debug("malloc_trim released memory: %s", released)
    return released


async def trim_heap_in_thread() -> None:
    """`trim_heap` in a worker thread (`trim_heap_every` runs it every
    `MEMORY_TRIM_INTERVAL_SECONDS`).

    Without it a burst of load leaves the process's RSS at its high-water mark (fragmented free
    memory glibc keeps); with it RSS falls back near its idle figure between bursts.
    """
    await anyio.to_thread.run_sync(trim_heap, abandon_on_cancel=True)


async def trim_heap_every(seconds: float) -> None:
    """`trim_heap_in_thread` every `seconds`, until cancelled. Each process trims its own heap, so
    this runs in every process rather than as a job on the shared queue."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await trim_heap_in_thread()
        except Exception:
            logger.warning("trimming the heap failed", exc_info=True)
