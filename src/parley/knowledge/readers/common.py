"""What every format reader shares: text normalisation, the section budget and text decoding.

`clean` and `heading_label` normalise the text a reader finds; `Sections` collects the sections
of one file and enforces `max_chars` as they accumulate, so an oversized file fails
`too_much_text` while it is read rather than after; `LineBlock` groups lines (table rows, list
items, CSV and JSON lines) into sections of bounded size; `open_text` opens a text file in the
encoding it was most likely written in. Nothing here imports a parsing library.
"""

from __future__ import annotations

import codecs
import re
from typing import IO, TYPE_CHECKING, Final

from parley.knowledge.extraction import Extracted, ExtractionError, Section

if TYPE_CHECKING:
    from pathlib import Path

# Table rows and CSV/JSON lines are grouped into sections of about this many characters.
LINE_BLOCK_CHARS: Final = 1000
# A heading is a label; longer runs are cut so every chunk's heading stays small.
_MAX_HEADING_CHARS: Final = 300

# Control characters that are not whitespace, C1 controls and lone surrogates: invisible in text,
# and a NUL or a surrogate would break storing the text later.
_INVISIBLE: Final = re.compile("[\x00-\x08\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
INLINE_SPACE: Final = re.compile(r"[^\S\n]+")
ANY_SPACE: Final = re.compile(r"\s+")


def clean(text: str) -> str:
    """Whitespace normalised: line by line, runs of spaces and tabs to one space, blank lines
    and invisible control characters dropped."""
    text = _INVISIBLE.sub("", text.replace("\r\n", "\n").replace("\r", "\n"))
    lines = (INLINE_SPACE.sub(" ", line).strip() for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def heading_label(text: str) -> str | None:
    """`text` as a heading: on one line, invisible characters dropped, cut to a bounded length;
    None when nothing is left."""
    label = ANY_SPACE.sub(" ", _INVISIBLE.sub("", text)).strip()[:_MAX_HEADING_CHARS].rstrip()
    return label or None


class Sections:
    """The sections read so far, with the character budget checked as they accumulate."""

    def __init__(self, max_chars: int) -> None:
        self.items: list[Section] = []
        self._chars = 0
        self._max_chars = max_chars

    def add(self, text: str, *, page: int | None = None, heading: str | None = None) -> None:
        """Normalise `text` and keep it as a section unless it is empty."""
        cleaned = clean(text)
        if not cleaned:
            return
        self.ensure_room(len(cleaned))
        self._chars += len(cleaned)
        self.items.append(Section(cleaned, page, heading))

    def ensure_room(self, pending: int) -> None:
        """Fail now if `pending` more characters would pass the budget."""
        if self._chars + pending > self._max_chars:
            raise ExtractionError(
                "too_much_text", f"The file holds more than {self._max_chars} characters of text."
            )

    def finish(self, pages: int | None = None, *, empty: str | None = None) -> Extracted:
        """The result, or `no_text` when nothing was kept."""
        if not self.items:
            raise ExtractionError("no_text", empty or "The file contains no text.")
        return Extracted(sections=self.items, pages=pages)


class LineBlock:
    """Lines gathered into one section, flushed at a blank line or when the block is full."""

    def __init__(
        self, sections: Sections, *, max_chars: int | None = None, heading: str | None = None
    ) -> None:
        self._sections = sections
        self._max_chars = max_chars
        self.heading = heading
        self._lines: list[str] = []
        self._size = 0

    def add(self, line: str) -> None:
        """Add a cleaned line; an empty one ends the block."""
        if not line:
            self.flush()
            return
        full = self._max_chars is not None and self._size + len(line) > self._max_chars
        if full and self._lines:
            self.flush()
        self._lines.append(line)
        self._size += len(line) + 1
        self._sections.ensure_room(self._size)

    def flush(self) -> None:
        """Keep the gathered lines as a section."""
        if self._lines:
            self._sections.add("\n".join(self._lines), heading=self.heading)
            self._lines = []
            self._size = 0


def _text_encoding(path: Path) -> str:
    """The file's encoding: its BOM's, else UTF-8 if it all decodes, else Windows-1252 (Latin-1
    with the printable characters Windows puts in 0x80-0x9f) if it all decodes, else Latin-1."""
    with path.open("rb") as stream:
        start = stream.read(4)
        if start.startswith(codecs.BOM_UTF8):
            return "utf-8-sig"
        if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            return "utf-16"
        for encoding in ("utf-8", "cp1252"):
            stream.seek(0)
            decoder = codecs.getincrementaldecoder(encoding)()
            try:
                while block := stream.read(1024 * 1024):
                    decoder.decode(block)
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                continue
            return encoding
    return "latin-1"


def open_text(path: Path) -> IO[str]:
    """The text file at `path`, open for reading in its encoding (see `_text_encoding`)."""
    # Universal newlines; bytes the encoding cannot decode become U+FFFD rather than an error.
    return path.open(encoding=_text_encoding(path), errors="replace", newline=None)
