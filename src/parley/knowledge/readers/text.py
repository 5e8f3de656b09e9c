"""The readers for plain text, CSV and JSON files: their lines, decoded and cleaned.

A plain text file becomes one section per run of lines between blank lines; CSV and JSON, whose
lines are records rather than prose, are grouped into sections of about `LINE_BLOCK_CHARS`
characters as well. Lines are read in bounded pieces, so memory stays bounded on any input, even
a single line of gigabytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from parley.knowledge.readers.common import (
    INLINE_SPACE,
    LINE_BLOCK_CHARS,
    LineBlock,
    Sections,
    clean,
    open_text,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from parley.knowledge.extraction import Extracted, ExtractionLimits

# Text files are read in pieces of this many characters, so memory stays bounded on any input.
_READ_CHARS: Final = 64 * 1024


def _lines(path: Path, sections: Sections) -> Iterator[str]:
    """The file's lines, cleaned, read in bounded pieces even when a line is enormous."""
    with open_text(path) as stream:
        parts: list[str] = []
        size = 0
        while piece := stream.readline(_READ_CHARS):
            if piece.endswith("\n"):
                parts.append(piece)
                yield clean("".join(parts))
                parts = []
                size = 0
                continue
            # Collapsing a partial line now is safe: collapsing again after joining is a no-op.
            part = INLINE_SPACE.sub(" ", piece)
            parts.append(part)
            size += len(part)
            sections.ensure_room(size)
        if parts:
            yield clean("".join(parts))


def _read_lines(path: Path, limits: ExtractionLimits, block_chars: int | None) -> Extracted:
    sections = Sections(limits.max_chars)
    block = LineBlock(sections, max_chars=block_chars)
    for line in _lines(path, sections):
        block.add(line)
    block.flush()
    return sections.finish()


def read_plain(path: Path, limits: ExtractionLimits) -> Extracted:
    """A plain text file's sections: runs of lines between blank lines."""
    return _read_lines(path, limits, None)


def read_data(path: Path, limits: ExtractionLimits) -> Extracted:
    """A CSV or JSON file's sections: its lines in blocks of about `LINE_BLOCK_CHARS`."""
    return _read_lines(path, limits, LINE_BLOCK_CHARS)
