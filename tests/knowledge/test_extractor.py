"""Files are read in child processes (`parley.knowledge.extractor`): a reader that hangs is killed
at the timeout, one that allocates without end meets its memory cap, one that dies fails its file
with a reason, a cancelled read kills its child, and the pool goes on reading the next files.

The hanging, allocating and dying readers are functions of this module run in the real children
(`Extractor.call`), as a hostile file would make a real reader behave."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from parley.knowledge.extraction import MARKDOWN, PDF, ExtractionError, ExtractionLimits
from parley.knowledge.extractor import Extractor
from tests.knowledge.test_extraction import write_pdf


def hang(pid_file: str) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(600)


def allocate(size: int) -> int:
    return len(bytearray(size))


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def pid() -> int:
    return os.getpid()


@pytest.fixture
async def extractor() -> AsyncIterator[Extractor]:
    reader = Extractor(processes=1, timeout_seconds=2, memory_bytes=512 * 1024 * 1024)
    try:
        yield reader
    finally:
        await asyncio.to_thread(reader.close)


def alive(process_id: int) -> bool:
    try:
        os.kill(process_id, 0)
    except ProcessLookupError:
        return False
    return True


async def gone(process_id: int, within: float = 10) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not alive(process_id):
            return True
        await asyncio.sleep(0.05)
    return False


async def test_a_file_is_read_and_chunked_in_a_child(extractor: Extractor, tmp_path: Path) -> None:
    notes = tmp_path / "notes.md"
    notes.write_text("# Title\n\n## Part\n\nSome words about ferries.\n", encoding="utf-8")
    extracted, chunks = await extractor.read(notes, MARKDOWN, ExtractionLimits())
    assert [chunk.text for chunk in chunks] == ["Title\n\nPart\n\nSome words about ferries."]
    assert extracted.pages is None
    pdf = write_pdf(tmp_path / "two.pdf", ["First page.", "Second page."])
    extracted, chunks = await extractor.read(pdf, PDF, ExtractionLimits())
    assert extracted.pages == 2
    assert [chunk.page for chunk in chunks] == [1, 2]
    assert await extractor.call(pid) != os.getpid()


async def test_a_reader_that_hangs_is_killed_at_the_timeout(
    extractor: Extractor, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    started = time.monotonic()
    with pytest.raises(ExtractionError) as caught:
        await extractor.call(hang, str(pid_file))
    assert caught.value.code == "timeout"
    assert "longer than 2 s" in caught.value.message
    assert time.monotonic() - started < 10
    assert await gone(int(pid_file.read_text()))
    # A new child reads the next file.
    assert await extractor.call(allocate, 1024) == 1024


async def test_a_runaway_allocation_meets_the_memory_cap(extractor: Extractor) -> None:
    with pytest.raises(MemoryError):
        await extractor.call(allocate, 2 * 1024**3)
    assert await extractor.call(allocate, 64 * 1024 * 1024) == 64 * 1024 * 1024


async def test_a_reader_that_dies_fails_its_file_with_a_reason(extractor: Extractor) -> None:
    with pytest.raises(ExtractionError) as caught:
        await extractor.call(die)
    assert caught.value.code == "unreadable"
    assert await extractor.call(allocate, 10) == 10


async def test_a_cancelled_read_kills_its_child(extractor: Extractor, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    task = asyncio.ensure_future(extractor.call(hang, str(pid_file)))
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, "the child never started"
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await gone(int(pid_file.read_text()))
    assert await extractor.call(allocate, 1) == 1
