"""Chunking for the knowledge base: a file's sections cut into search-sized pieces.

`chunk_sections` packs the sections from `extraction.extract` into chunks of about a target size
that follow the document's shape: a new heading or page starts a new chunk, paragraphs are kept
whole while they fit, a long paragraph is cut at sentence ends (else at whitespace, else hard), and
consecutive chunks under one heading overlap by whole words so a passage cut in two is still found.
Every chunk carries exact character offsets into `document_text(sections)`, which is what the
search index stores and highlights against. Pure and deterministic: same input, same chunks.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from parley.knowledge.extraction import Section

SEPARATOR: Final = "\n\n"
MIN_TARGET_CHARS: Final = 100
MAX_TARGET_CHARS: Final = 20_000

# Sentence-ending punctuation, the closing quotes and brackets that may follow it, and CJK full
# stops (which need no space after them); escaped, as the characters look like ASCII ones.
_ENDS = ".!?\u2026"
_CLOSERS = "\"'\u201d\u2019)\\]"
_CJK_ENDS = "\u3002\uff01\uff1f"
# Where a piece of a long paragraph may end: after a sentence's punctuation that is followed by
# whitespace, after CJK full stops, or before a line break.
_BREAK = re.compile(f"[{_ENDS}]+[{_CLOSERS}]*(?=\\s)|[{_CJK_ENDS}]+|\n")
# Where an overlap may start: the first character of a sentence or of a line...
_SENTENCE_START = re.compile(
    f"(?:(?<=[{_ENDS}]\\s)|(?<=[{_ENDS}][{_CLOSERS}]\\s)|(?<=\n)|(?<=[{_CJK_ENDS}]))\\S"
)
# ... or else of a word.
_WORD_START = re.compile(r"(?<!\S)\S")
_NON_SPACE = re.compile(r"\S")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a file's text, as the search index stores it.

    Attributes:
        ordinal: its 0-based position in the file.
        text: the chunk's text, `document_text(sections)[start:end]`.
        page: the page the chunk starts on (None for formats without pages).
        heading: the heading of the chunk's first section.
        start: the chunk's first character offset in `document_text(sections)`.
        end: the offset just past its last character.
    """

    ordinal: int
    text: str
    page: int | None
    heading: str | None
    start: int
    end: int


def document_text(sections: Sequence[Section]) -> str:
    """The file's text as chunk offsets refer to it: the sections joined by a blank line.

    Args:
        sections: the file's sections, in document order.

    Returns:
        Their texts joined by "\\n\\n".
    """
    return SEPARATOR.join(section.text for section in sections)


def chunk_sections(
    sections: Sequence[Section], *, target_chars: int = 1200, overlap_chars: int = 200
) -> list[Chunk]:
    """Split a file's sections into chunks of about `target_chars`.

    A new heading or a new page starts a new chunk; paragraphs are packed whole while the chunk
    stays within `target_chars`; a paragraph longer than that is split at sentence ends, else at
    whitespace, else cut hard. Consecutive chunks under one heading (and on one page) share up to
    `overlap_chars` of trailing text, starting at a sentence or word start, never mid-word. No
    chunk is longer than 1.5 x `target_chars`, none starts or ends with whitespace, and
    `document_text(sections)[c.start:c.end] == c.text` for every chunk.

    Args:
        sections: the file's sections, in document order.
        target_chars: the size to aim for, 100 to 20000.
        overlap_chars: how much text consecutive chunks may share, 0 up to half the target.

    Returns:
        The chunks in document order, numbered from 0.

    Raises:
        ValueError: a parameter is out of bounds.
    """
    if (
        isinstance(target_chars, bool)
        or not isinstance(target_chars, int)
        or not MIN_TARGET_CHARS <= target_chars <= MAX_TARGET_CHARS
    ):
        raise ValueError(
            f"target_chars must be an integer from {MIN_TARGET_CHARS} to {MAX_TARGET_CHARS}."
        )
    if (
        isinstance(overlap_chars, bool)
        or not isinstance(overlap_chars, int)
        or not 0 <= overlap_chars * 2 < target_chars
    ):
        raise ValueError("overlap_chars must be an integer from 0 to below half of target_chars.")
    text = document_text(sections)
    packer = _Packer(text, target_chars, overlap_chars)
    for page, heading, pieces in _groups(text, sections, target_chars):
        packer.pack(pieces, page, heading)
    return packer.chunks


def _groups(
    text: str, sections: Sequence[Section], target: int
) -> Iterator[tuple[int | None, str | None, list[tuple[int, int]]]]:
    """Runs of consecutive sections with one page and heading, as pieces of at most `target`
    characters (offsets into `text`). Sections with no visible text neither start nor end a run.
    A run that is nothing but its heading (a title right before a sub-heading) joins the next run
    on its page instead of being a chunk of one line: "Bicycle care" then "Chains ..." is one
    chunk under "Chains" that starts with the title."""
    key: tuple[int | None, str | None] | None = None
    pieces: list[tuple[int, int]] = []
    offset = 0
    for section in sections:
        start, offset = offset, offset + len(section.text) + len(SEPARATOR)
        section_pieces = list(_pieces(text, start, start + len(section.text), target))
        if not section_pieces:
            continue
        if key != (section.page, section.heading):
            if key is not None and not (
                key[0] == section.page and _only_heading(text, pieces, key[1])
            ):
                yield (*key, pieces)
                pieces = []
            key = (section.page, section.heading)
        pieces.extend(section_pieces)
    if key is not None:
        yield (*key, pieces)


def _only_heading(text: str, pieces: list[tuple[int, int]], heading: str | None) -> bool:
    """Whether a run's text is its heading alone."""
    if heading is None or len(pieces) != 1:
        return False
    start, end = pieces[0]
    return text[start:end] == heading.strip()


def _pieces(text: str, start: int, end: int, target: int) -> Iterator[tuple[int, int]]:
    """`text[start:end]` without surrounding whitespace, cut into pieces of at most `target`."""
    first = _NON_SPACE.search(text, start, end)
    if first is None:
        return
    position = first.start()
    while end > position and text[end - 1].isspace():
        end -= 1
    while end - position > target:
        cut = _cut(text, position, position + target)
        piece_end = cut
        while text[piece_end - 1].isspace():
            piece_end -= 1
        yield position, piece_end
        following = _NON_SPACE.search(text, cut, end)
        if following is None:  # cannot happen: `end` follows a visible character
            return
        position = following.start()
    yield position, end


def _cut(text: str, start: int, limit: int) -> int:
    """Where a piece starting at `start` should end, at most at `limit` (exclusive).

    Prefers the last sentence end or line break in the second half of the window, then the last
    whitespace, then any sentence end, and cuts hard at `limit` only inside one enormous word.
    `text[start]` is visible and `text[limit]` exists.
    """
    half = start + (limit - start) // 2
    late: int | None = None
    early: int | None = None
    for match in _BREAK.finditer(text, start + 1, limit + 1):
        cut = match.start() if match.group() == "\n" else match.end()
        if start < cut <= limit:
            if cut >= half:
                late = cut
            else:
                early = cut
    if late is not None:
        return late
    for index in range(limit, start, -1):
        if text[index].isspace():
            return index
    return early if early is not None else limit


class _Packer:
    """Packs pieces into chunks, one run (page and heading) at a time."""

    def __init__(self, text: str, target: int, overlap: int) -> None:
        self.chunks: list[Chunk] = []
        self._text = text
        self._target = target
        self._overlap = overlap
        self._longest = target * 3 // 2

    def pack(self, pieces: list[tuple[int, int]], page: int | None, heading: str | None) -> None:
        """Chunk one run's pieces; each piece is at most the target long."""
        start, end = pieces[0]
        for piece_start, piece_end in pieces[1:]:
            if piece_end - start <= self._target:
                end = piece_end
                continue
            self._emit(start, end, page, heading)
            start = self._overlap_start(start, end, piece_start, piece_end)
            end = piece_end
        self._emit(start, end, page, heading)

    def _emit(self, start: int, end: int, page: int | None, heading: str | None) -> None:
        self.chunks.append(
            Chunk(len(self.chunks), self._text[start:end], page, heading, start, end)
        )

    def _overlap_start(self, start: int, end: int, piece_start: int, piece_end: int) -> int:
        """Where the chunk after [start, end) begins so that it repeats that chunk's tail.

        The repeated tail is at most `overlap` long and at most half of that chunk (a short chunk
        is not repeated almost whole), starts at a sentence start if it can, else at a word
        start, and is dropped when it would push the chunk past 1.5 x the target.
        """
        if not self._overlap:
            return piece_start
        low = max(end - self._overlap, start + (end - start + 1) // 2, piece_end - self._longest)
        if low >= end:
            return piece_start
        for pattern in (_SENTENCE_START, _WORD_START):
            match = pattern.search(self._text, low, end)
            if match is not None:
                return match.start()
        return piece_start
