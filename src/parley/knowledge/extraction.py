"""Text extraction for the knowledge base: what a file really is, and the text inside it.

`detect_media_type` decides from a file's first bytes, its name and the client's declared type
whether it is one of the formats we accept (PDF, DOCX, Markdown, HTML, plain text, CSV, JSON).
`extract` reads such a file into `Section`s (paragraphs in document order, each with its page and
the heading it sits under) that chunking turns into search chunks. Both are pure, synchronous and
CPU-bound (the ingestion job runs them in a worker thread) and know nothing of the database or
HTTP. Every limit in `ExtractionLimits` is enforced while reading, so a hostile file (a zip bomb, a
PDF claiming a million pages, gigabytes of text) fails fast with an `ExtractionError` whose `code`
says why, never with another exception type. The readers themselves live in
`parley.knowledge.readers`, one module per format, imported only when a file of that format is read.
"""

from __future__ import annotations

import codecs
import logging
import math
import re
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, ClassVar, Final

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

logger = logging.getLogger(__name__)

PDF: Final = "application/pdf"
DOCX: Final = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
MARKDOWN: Final = "text/markdown"
HTML: Final = "text/html"
PLAIN: Final = "text/plain"
CSV: Final = "text/csv"
JSON: Final = "application/json"
SUPPORTED_MEDIA_TYPES: Final[frozenset[str]] = frozenset(
    {PDF, DOCX, MARKDOWN, HTML, PLAIN, CSV, JSON}
)

# How much of a file's start `detect_media_type` looks at.
_HEAD_BYTES: Final = 8192
# Text with more C0 control characters than this share of its characters is binary data.
_MAX_CONTROL_SHARE: Final = 0.01

# The readers check these too: a file must really be what it was detected as.
_PDF_MAGIC: Final = b"%PDF-"
_ZIP_MAGIC: Final = b"PK\x03\x04"
_DECLARED_PDF: Final = frozenset({PDF, "application/x-pdf"})
_DECLARED_MARKDOWN: Final = frozenset({MARKDOWN, "text/x-markdown"})
_DECLARED_HTML: Final = frozenset({HTML, "application/xhtml+xml"})
_DECLARED_CSV: Final = frozenset({CSV, "application/csv"})
_DECLARED_JSON: Final = frozenset({JSON, "text/json"})
_TEXT_EXTENSIONS: Final[dict[str, str]] = {
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".html": HTML,
    ".htm": HTML,
    ".csv": CSV,
    ".json": JSON,
}

# C0 control characters other than whitespace (tab, newlines, form feed), and DEL.
_CONTROL_CHARS: Final = frozenset(chr(code) for code in (*range(9), *range(14, 32), 127))
_ERROR_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True, slots=True)
class ExtractionLimits:
    """The bounds a file must stay within to be read.

    Attributes:
        max_pages: a PDF with more pages fails `too_many_pages`.
        max_chars: extracted text past this many characters fails `too_much_text`.
        max_unpacked_bytes: a DOCX whose zip members unpack to more fails `zip_bomb`.
        max_compression_ratio: a DOCX member compressed more than this fails `zip_bomb`.
    """

    max_pages: int = 2000
    max_chars: int = 5_000_000
    max_unpacked_bytes: int = 200 * 1024 * 1024
    max_compression_ratio: float = 200.0

    def __post_init__(self) -> None:
        """Reject limits outside sane bounds.

        Raises:
            ValueError: a limit is not a number in its range.
        """
        _check_int("max_pages", self.max_pages, 1, 1_000_000)
        _check_int("max_chars", self.max_chars, 1, 1_000_000_000)
        _check_int("max_unpacked_bytes", self.max_unpacked_bytes, 1, 64 * 1024**3)
        ratio = self.max_compression_ratio
        if (
            isinstance(ratio, bool)
            or not isinstance(ratio, int | float)
            or not math.isfinite(ratio)
            or not 1.0 <= ratio <= 100_000.0
        ):
            raise ValueError("max_compression_ratio must be a number from 1 to 100000.")


def _check_int(name: str, value: object, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}.")


_DEFAULT_LIMITS: Final = ExtractionLimits()


@dataclass(frozen=True, slots=True)
class Section:
    """A run of text with where it is.

    Attributes:
        text: the paragraph's text, whitespace normalised (never empty from `extract`).
        page: its page, from 1; None for formats without pages.
        heading: the nearest heading's text; None before the first heading.
    """

    text: str
    page: int | None
    heading: str | None


@dataclass(frozen=True, slots=True)
class Extracted:
    """A file's text.

    Attributes:
        sections: in document order; paragraphs are separate sections.
        pages: the PDF's page count; None for other formats.
    """

    sections: list[Section]
    pages: int | None


class ExtractionError(Exception):
    """A file that cannot be read: `code` is stable and machine-readable, `message` is for people.

    `extract` raises only the codes in `CODES`; the ingestion job that calls it may raise its own
    (a timeout, missing bytes) through the same type, so any snake_case code is accepted.

    Attributes:
        code: a snake_case code, one of `CODES` when it comes from `extract`.
        message: a sentence for a person.
    """

    CODES: ClassVar[frozenset[str]] = frozenset(
        {
            "unreadable",
            "encrypted",
            "too_many_pages",
            "too_much_text",
            "zip_bomb",
            "type_mismatch",
            "no_text",
            "unsupported_media_type",
        }
    )

    def __init__(self, code: str, message: str) -> None:
        """Make the error.

        Args:
            code: a snake_case code of at most 64 characters.
            message: a sentence for a person.

        Raises:
            ValueError: `code` is not a snake_case code.
        """
        if not isinstance(code, str) or _ERROR_CODE.fullmatch(code) is None:
            raise ValueError(f"An extraction error code must be snake_case, not {code!r}.")
        # Both go to Exception so the error pickles (the job may run it in another process).
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


# ---------------------------------------------------------------------------------------------
# Detection


def detect_media_type(head: bytes, filename: str, declared: str | None) -> str | None:
    """The file's real media type, or None when it is none we accept.

    Magic bytes win: `%PDF-` is a PDF; a zip (`PK\\x03\\x04`) is a DOCX only when the filename
    says .docx or the declared type says DOCX (the container itself is checked in `extract`).
    Anything else must be text (UTF-8, UTF-16 with a BOM, or Latin-1 without NUL bytes and with
    few control characters) and is Markdown, HTML, CSV or JSON by extension, then by declared
    type, then HTML when it starts like an HTML document; otherwise plain text. A file that claims
    PDF or DOCX by name or type but is not one, or binary data that claims to be text, is None
    (the caller answers 415).

    Args:
        head: the file's first bytes (up to 8 KiB are looked at).
        filename: the client's filename (only its extension matters).
        declared: the client's Content-Type, parameters allowed, or None.

    Returns:
        One of `SUPPORTED_MEDIA_TYPES`, or None.
    """
    head = head[:_HEAD_BYTES]
    extension = PurePosixPath(filename.replace("\\", "/")).suffix.lower()
    claimed = (declared or "").split(";", 1)[0].strip().lower()
    if head.startswith(_PDF_MAGIC):
        return PDF
    if head.startswith(_ZIP_MAGIC):
        return DOCX if extension == ".docx" or claimed == DOCX else None
    if extension in {".pdf", ".docx"} or claimed in _DECLARED_PDF or claimed == DOCX:
        return None
    text = _decode_head(head)
    if text is None:
        return None
    if extension in _TEXT_EXTENSIONS:
        return _TEXT_EXTENSIONS[extension]
    for kinds, media_type in (
        (_DECLARED_MARKDOWN, MARKDOWN),
        (_DECLARED_HTML, HTML),
        (_DECLARED_CSV, CSV),
        (_DECLARED_JSON, JSON),
    ):
        if claimed in kinds:
            return media_type
    opening = text.lstrip("\ufeff \t\r\n").lower()
    if opening.startswith(("<!doctype html", "<html")):
        return HTML
    return PLAIN


def _decode_head(head: bytes) -> str | None:
    """The head decoded as text, or None when it is binary data."""
    try:
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            # The head may end inside a character: decode incrementally, not final.
            text = codecs.getincrementaldecoder("utf-16")().decode(head, final=False)
        else:
            text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=False)
    except UnicodeDecodeError:
        if b"\x00" in head:
            return None
        text = head.decode("latin-1")
    if "\x00" in text:
        return None
    controls = sum(1 for char in text if char in _CONTROL_CHARS)
    if text and controls / len(text) > _MAX_CONTROL_SHARE:
        return None
    return text


# ---------------------------------------------------------------------------------------------
# Extraction: the entry point; each format's reader is in `parley.knowledge.readers`


def extract(path: Path, media_type: str, limits: ExtractionLimits = _DEFAULT_LIMITS) -> Extracted:
    """Read the file at `path` as `media_type`.

    Args:
        path: the file on local disk.
        media_type: one of `SUPPORTED_MEDIA_TYPES` (usually from `detect_media_type`).
        limits: the bounds the file must stay within.

    Returns:
        Its sections in document order, and its page count for a PDF.

    Raises:
        ExtractionError: for anything that cannot be read; never another exception type.
    """
    reader = _reader(media_type)
    if reader is None:
        raise ExtractionError("unsupported_media_type", f"Files of type {media_type} are not read.")
    try:
        return reader(path, limits)
    except ExtractionError:
        raise
    except MemoryError:
        raise ExtractionError("unreadable", "The file needs more memory than we allow.") from None
    except RecursionError:
        raise ExtractionError("unreadable", "The file is nested too deeply to read.") from None
    except OSError as exc:
        # The reason, not the message: that names the path on our disk.
        reason = exc.strerror or type(exc).__name__
        raise ExtractionError("unreadable", f"The file could not be opened ({reason}).") from exc
    except Exception as exc:
        # pypdf, python-docx and lxml raise many unrelated types for damaged files.
        logger.info("extraction of a %s failed", media_type, exc_info=True)
        raise ExtractionError(
            "unreadable", f"The file is damaged or not a valid {_label(media_type)}."
        ) from exc


def _label(media_type: str) -> str:
    return {PDF: "PDF", DOCX: "Word document", MARKDOWN: "Markdown file", HTML: "HTML page"}.get(
        media_type, "text file"
    )


def import_readers() -> None:
    """Import every format's reader now (a process that will read files, before its first)."""
    for media_type in sorted(SUPPORTED_MEDIA_TYPES):
        _reader(media_type)


def _reader(media_type: str) -> Callable[[Path, ExtractionLimits], Extracted] | None:
    """The reader for `media_type`, imported now: pypdf, python-docx (with lxml) and markdown-it
    take ~0.4 s to import, and the API server imports this module at start-up for detection
    alone."""
    if media_type == PDF:
        from parley.knowledge.readers.pdf import read_pdf

        return read_pdf
    if media_type == DOCX:
        from parley.knowledge.readers.docx import read_docx

        return read_docx
    if media_type == MARKDOWN:
        from parley.knowledge.readers.markdown import read_markdown

        return read_markdown
    if media_type == HTML:
        from parley.knowledge.readers.html import read_html

        return read_html
    if media_type == PLAIN:
        from parley.knowledge.readers.text import read_plain

        return read_plain
    if media_type in {CSV, JSON}:
        from parley.knowledge.readers.text import read_data

        return read_data
    return None
