"""Reading files in child processes, so that a reader that hangs or runs away can be stopped.

A thread cannot be stopped: a crafted PDF that sends pypdf into a loop, or a document that
makes a reader allocate without end, would keep a worker's thread (and its memory) after the
ingestion job gave up on it. `Extractor` runs `extract` and `chunk_sections` in a small pool of
child processes (pebble's `ProcessPool`, which kills a child whose task passes its timeout and
starts a new one), each with an address-space cap (`resource.RLIMIT_AS`, on POSIX systems): a
runaway allocation then ends in the child as a `MemoryError`, which `extract` reports as a file
that needs more memory than allowed, instead of the kernel killing the worker. A child that dies
(a crash in a C extension, a signal) fails its file the same way, with a reason.

Children are spawned, not forked (the parent runs an event loop, threads and database pools),
started on the first file, reused for the next ones, and stopped by `close`. Starting one costs
the import of the readers (~0.4 s), once per child.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from parley.knowledge.chunking import Chunk, chunk_sections
from parley.knowledge.extraction import (
    Extracted,
    ExtractionError,
    ExtractionLimits,
    extract,
    import_readers,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from pebble import ProcessPool

logger = logging.getLogger(__name__)

T = TypeVar("T")
MIB = 1024 * 1024


def read_and_chunk(
    path: Path, media_type: str, limits: ExtractionLimits
) -> tuple[Extracted, list[Chunk]]:
    """What a child does for one file: read it, cut it into chunks."""
    extracted = extract(path, media_type, limits)
    return extracted, chunk_sections(extracted.sections)


def _cap_memory(limit_bytes: int) -> None:
    """A child's initializer: cap its address space (no cap where `resource` is missing)."""
    try:
        import resource
    except ImportError:  # not POSIX
        return
    if limit_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    # Import the readers now, under the cap, so the first file does not pay for it.
    import_readers()


class Extractor:
    """A pool of child processes that read files, each file within a time and a memory limit.

    Args:
        processes: how many files are read at once (more wait for a free child).
        timeout_seconds: a file still being read after this is failed (`timeout`) and its
            child killed.
        memory_bytes: each child's address-space cap; 0 for none.
    """

    def __init__(self, *, processes: int, timeout_seconds: float, memory_bytes: int) -> None:
        self.processes = processes
        self.timeout_seconds = timeout_seconds
        self.memory_bytes = memory_bytes
        self._pool: ProcessPool | None = None

    def _started(self) -> ProcessPool:
        if self._pool is None:
            from pebble import ProcessPool

            self._pool = ProcessPool(
                max_workers=self.processes,
                initializer=_cap_memory,
                initargs=(self.memory_bytes,),
                context=multiprocessing.get_context("spawn"),
            )
        return self._pool

    async def read(
        self, path: Path, media_type: str, limits: ExtractionLimits
    ) -> tuple[Extracted, list[Chunk]]:
        """The file's sections and chunks, read in a child.

        Raises:
            ExtractionError: the file cannot be read, took longer than the timeout, or
                stopped its child.
        """
        return await self.call(read_and_chunk, path, media_type, limits)

    async def call(self, function: Callable[..., T], *args: Any) -> T:
        """`function(*args)` in a child, within the timeout (`function` must be importable by
        name: a module-level function). Cancelling the caller kills the child.

        Raises:
            ExtractionError: the timeout passed (`timeout`), or the child died (`unreadable`);
                and whatever `function` raises.
        """
        from pebble import ProcessExpired

        future = self._started().schedule(function, args=args, timeout=self.timeout_seconds)
        try:
            return await asyncio.wrap_future(future)
        except TimeoutError:
            raise ExtractionError(
                "timeout", f"Reading the file took longer than {self.timeout_seconds:g} s."
            ) from None
        except ProcessExpired as exc:
            logger.warning("a reader process ended with exit code %s", exc.exitcode)
            raise ExtractionError(
                "unreadable", "Reading the file stopped its reader (it may be damaged or hostile)."
            ) from None

    def close(self) -> None:
        """Stop the children (those reading a file are killed)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()  # type: ignore[no-untyped-call]  # pebble leaves it unannotated
            pool.join(timeout=10)
