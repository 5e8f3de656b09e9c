"""The PDF reader, on pypdf: each page's text, split into paragraphs that keep their page number.

Encryption is handled here: a PDF that opens with the empty password is read, any other fails
`encrypted`. The page count is bounded before any page is read (`_check_page_count`), so a PDF
claiming a million pages fails `too_many_pages` in bounded time and memory. A page whose text
cannot be extracted is skipped; a PDF with no text at all (scanned images) fails `no_text`.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Final

from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError
from pypdf.generic import ArrayObject, DictionaryObject, PdfObject

from parley.knowledge.extraction import _PDF_MAGIC, ExtractionError
from parley.knowledge.readers.common import Sections

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from parley.knowledge.extraction import Extracted, ExtractionLimits

logger = logging.getLogger(__name__)

# Page-tree walking bounds: deeper trees are malformed; visits bound trees of empty nodes.
_MAX_PAGE_TREE_DEPTH: Final = 100
_PAGE_TREE_VISITS_PER_PAGE: Final = 8
_PAGE_TREE_BASE_VISITS: Final = 10_000
_BLANK_LINES: Final = re.compile(r"\n[^\S\n]*\n\s*")


def _resolved(value: object) -> object:
    return value.get_object() if isinstance(value, PdfObject) else value


def _kids(node: DictionaryObject) -> Iterator[object]:
    kids = _resolved(node.get("/Kids"))
    return iter(kids) if isinstance(kids, ArrayObject) else iter(())


def _check_page_count(reader: PdfReader, max_pages: int) -> None:
    """Fail `too_many_pages` before any page is read, in time and memory bounded by `max_pages`.

    pypdf counts pages by building an object for every page, so a PDF with 100,000 pages would be
    expanded whole first. The declared /Count is checked first; because it may lie, the page tree
    is then walked, counting leaves only until the limit is passed.
    """
    tree = _resolved(reader.root_object.get("/Pages"))
    if not isinstance(tree, DictionaryObject):
        raise ExtractionError("unreadable", "The PDF has no page tree.")
    declared = _resolved(tree.get("/Count"))
    too_many = ExtractionError("too_many_pages", f"The PDF has more than {max_pages} pages.")
    if isinstance(declared, int) and declared > max_pages:
        raise too_many
    pages = 0
    visits_left = max_pages * _PAGE_TREE_VISITS_PER_PAGE + _PAGE_TREE_BASE_VISITS
    stack: list[tuple[DictionaryObject, Iterator[object]]] = [(tree, _kids(tree))]
    ancestors = {id(tree)}
    while stack:
        node, kids = stack[-1]
        kid = next(kids, stack)
        if kid is stack:
            stack.pop()
            ancestors.discard(id(node))
            continue
        visits_left -= 1
        if visits_left < 0:
            raise ExtractionError("unreadable", "The PDF's page tree is malformed.")
        child = _resolved(kid)
        if not isinstance(child, DictionaryObject) or not child:
            continue
        kind = _resolved(child.get("/Type"))
        if kind == "/Pages" or (kind is None and "/Kids" in child):
            if id(child) in ancestors or len(stack) >= _MAX_PAGE_TREE_DEPTH:
                raise ExtractionError("unreadable", "The PDF's page tree is malformed.")
            ancestors.add(id(child))
            stack.append((child, _kids(child)))
        elif kind == "/Page" or kind is None:
            pages += 1
            if pages > max_pages:
                raise too_many


def read_pdf(path: Path, limits: ExtractionLimits) -> Extracted:
    """A PDF's sections: each page's paragraphs, with the page they are on."""
    with path.open("rb") as stream:
        if stream.read(len(_PDF_MAGIC)) != _PDF_MAGIC:
            raise ExtractionError("type_mismatch", "The file is not a PDF.")
    try:
        reader = PdfReader(path, strict=False)
    except (NotImplementedError, DependencyError) as exc:
        # pypdf opens the security handler while reading the file; one it lacks raises these.
        if b"/Encrypt" in path.read_bytes():
            raise ExtractionError(
                "encrypted", "The PDF uses an encryption we cannot open."
            ) from exc
        raise
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("") != PasswordType.NOT_DECRYPTED
        except Exception:
            # An unknown or unsupported security handler is as closed as a wrong password.
            opened = False
        if not opened:
            raise ExtractionError("encrypted", "The PDF is password-protected.")
    _check_page_count(reader, limits.max_pages)
    page_count = len(reader.pages)
    if page_count > limits.max_pages:
        raise ExtractionError("too_many_pages", f"The PDF has more than {limits.max_pages} pages.")
    sections = Sections(limits.max_chars)
    for number, page in enumerate(reader.pages, start=1):
        try:
            text = page.extract_text()
        except MemoryError:
            raise
        except Exception:
            logger.info("skipped PDF page %d: its text could not be extracted", number)
            continue
        for paragraph in _BLANK_LINES.split(text):
            sections.add(paragraph, page=number)
    return sections.finish(page_count, empty="The PDF contains no text (it may be scanned images).")
