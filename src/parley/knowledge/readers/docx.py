"""The DOCX reader, on python-docx: a Word document's paragraphs and tables in document order.

The zip container is checked before python-docx opens it (member count, unpacked size,
compression ratio, encryption, the parts a Word document must have), so a zip bomb fails
`zip_bomb` without being unpacked. Paragraphs styled as headings (Heading 1-9, Title) label the
text under them; a table becomes a line per row with its cells joined by " | ".
"""

from __future__ import annotations

import re
import zipfile
from typing import TYPE_CHECKING, Final

import docx
from docx.oxml.ns import qn
from docx.text.paragraph import Paragraph

from parley.knowledge.extraction import _ZIP_MAGIC, ExtractionError
from parley.knowledge.readers.common import (
    ANY_SPACE,
    LINE_BLOCK_CHARS,
    LineBlock,
    Sections,
    clean,
    heading_label,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from docx.table import Table

    from parley.knowledge.extraction import Extracted, ExtractionLimits

# A DOCX with more members than this is not a document but an attack on the zip reader.
_MAX_ZIP_MEMBERS: Final = 10_000
_HEADING_STYLE: Final = re.compile(r"(heading [1-9]|title)", re.IGNORECASE)


def _check_docx_container(path: Path, limits: ExtractionLimits) -> None:
    """Refuse a DOCX that is not a Word container or that would unpack into too much.

    The sizes checked are the archive's own claims; that suffices because zipfile never returns
    more bytes for a member than its declared size (and fails its CRC check instead).
    """
    with path.open("rb") as stream:
        if stream.read(4) != _ZIP_MAGIC:
            raise ExtractionError("type_mismatch", "The file is not a Word document.")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise ExtractionError(
            "unreadable", "The Word document's zip container is damaged."
        ) from exc
    with archive:
        members = archive.infolist()
        if len(members) > _MAX_ZIP_MEMBERS:
            raise ExtractionError(
                "zip_bomb", f"The archive has more than {_MAX_ZIP_MEMBERS} files."
            )
        unpacked = 0
        for member in members:
            unpacked += member.file_size
            if unpacked > limits.max_unpacked_bytes:
                raise ExtractionError(
                    "zip_bomb",
                    f"The document unpacks to more than {limits.max_unpacked_bytes} bytes.",
                )
            if member.file_size > limits.max_compression_ratio * max(member.compress_size, 1):
                raise ExtractionError(
                    "zip_bomb",
                    f"A part of the document is compressed more than "
                    f"{limits.max_compression_ratio:g} times.",
                )
            if member.flag_bits & 0x1:
                raise ExtractionError("encrypted", "The Word document is password-protected.")
        names = {member.filename for member in members}
        if "word/document.xml" not in names or "[Content_Types].xml" not in names:
            raise ExtractionError(
                "type_mismatch", "The file is a zip archive, not a Word document."
            )


def _is_heading(paragraph: Paragraph) -> bool:
    style = paragraph.style
    name = style.name if style is not None else None
    return name is not None and _HEADING_STYLE.fullmatch(name.strip()) is not None


def _row_lines(table: Table) -> Iterator[str]:
    for row in table.rows:
        try:
            cells = row.cells
        except (ValueError, IndexError):
            # A malformed vertical merge: keep the row's words rather than lose the table.
            yield " ".join(node.text or "" for node in row._tr.iter(qn("w:t")))
            continue
        texts: list[str] = []
        previous: object = None
        for cell in cells:
            # A cell spanning several grid columns is listed once per column: keep it once.
            if previous is not None and cell._tc is previous:
                continue
            previous = cell._tc
            if text := ANY_SPACE.sub(" ", cell.text).strip():
                texts.append(text)
        yield " | ".join(texts)


def read_docx(path: Path, limits: ExtractionLimits) -> Extracted:
    """A Word document's sections: its paragraphs, and its tables in blocks of rows."""
    _check_docx_container(path, limits)
    try:
        document = docx.Document(str(path))
    except ValueError as exc:
        if "not a Word file" in str(exc):
            raise ExtractionError("type_mismatch", "The file is not a Word document.") from exc
        raise
    sections = Sections(limits.max_chars)
    heading: str | None = None
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            text = block.text
            if _is_heading(block) and (label := heading_label(text)) is not None:
                heading = label
            sections.add(text, heading=heading)
        else:
            rows = LineBlock(sections, max_chars=LINE_BLOCK_CHARS, heading=heading)
            for line in _row_lines(block):
                if line := clean(line):
                    rows.add(line)
            rows.flush()
    return sections.finish()
