"""The HTML reader, on the standard library's `html.parser`: a page's reading text as sections.

Headings h1-h6 label the text under them, block elements end paragraphs, table rows become lines
with their cells joined by " | ", and elements that hold no reading text (scripts, styles, the
head, navigation) are dropped. The file is fed to the parser in pieces and every tag's size is
bounded, so neither a flood of text nor a tag with a million attributes can exhaust memory. The
Markdown reader uses `HtmlText` too, for the raw HTML blocks a Markdown file may hold.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import TYPE_CHECKING, Final

from parley.knowledge.extraction import ExtractionError
from parley.knowledge.readers.common import ANY_SPACE, Sections, heading_label, open_text

if TYPE_CHECKING:
    from pathlib import Path

    from parley.knowledge.extraction import Extracted, ExtractionLimits

# HTML is fed to the parser in pieces of at least this many characters.
_HTML_FEED_CHARS: Final = 1024 * 1024
# html.parser builds a list entry per attribute: a tag longer than this many characters has its
# whitespace (so its attribute count) checked, and more than the maximum fails, bounding memory.
_LONG_TAG_CHARS: Final = 4096
_MAX_TAG_SPACES: Final = 100_000
_SKIPPED_TAGS: Final = frozenset(
    {"script", "style", "head", "nav", "noscript", "template", "svg", "iframe", "object", "select"}
)
_START_TAG: Final = re.compile(r"<[a-zA-Z]")
_HEADING_TAGS: Final = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
_BLOCK_TAGS: Final = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "caption", "dd", "details", "dialog",
        "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header", "hr",
        "html", "legend", "li", "main", "ol", "p", "pre", "section", "summary", "table", "ul",
    }
)  # fmt: skip


class HtmlText(HTMLParser):
    """HTML to sections: headings h1-h6 as headings, block elements as paragraphs, table rows as
    lines with cells joined by " | ", and the content of script/style/head/nav (and other
    elements that hold no reading text) dropped."""

    def __init__(self, sections: Sections, heading: str | None = None) -> None:
        super().__init__(convert_charrefs=True)
        self.heading = heading
        self._sections = sections
        self._skipping: list[str] = []
        self._in_heading = False
        self._pre = 0
        self._parts: list[str] = []
        self._size = 0
        # Cells are joined by " | " only between cells with text, so empty cells leave no mark.
        self._row_has_text = False
        self._separator_due = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "body" and "head" in self._skipping:
            # A page that never closes <head> still has its body read.
            self._skipping = self._skipping[: self._skipping.index("head")]
        if tag in _SKIPPED_TAGS:
            self._skipping.append(tag)
            return
        if self._skipping:
            return
        if tag in _HEADING_TAGS:
            self._end_heading()
            self._flush()
            self._in_heading = True
        elif tag == "br":
            self._append("\n")
        elif tag in {"td", "th"}:
            self._separator_due = self._row_has_text
        elif tag == "tr":
            self._end_row()
        elif tag in _BLOCK_TAGS:
            # A block inside a heading means the heading was never closed: it ends here.
            self._end_heading()
            self._flush()
        if tag == "pre":
            self._pre += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED_TAGS:
            if tag in self._skipping:
                index = len(self._skipping) - 1 - self._skipping[::-1].index(tag)
                del self._skipping[index:]
            return
        if self._skipping:
            return
        if tag in _HEADING_TAGS:
            self._end_heading()
        elif tag == "tr":
            self._end_row()
        elif tag in _BLOCK_TAGS and not self._in_heading:
            self._flush()
        if tag == "pre":
            self._pre = max(0, self._pre - 1)

    def handle_data(self, data: str) -> None:
        if self._skipping:
            return
        if not self._pre:
            data = ANY_SPACE.sub(" ", data)
            if data == " " and (not self._parts or self._parts[-1].endswith((" ", "\n"))):
                return
        if self._separator_due and not data.isspace():
            self._append(" | ")
            self._separator_due = False
        if not data.isspace():
            self._row_has_text = True
        self._append(data)

    def check_for_whole_start_tag(self, i: int) -> int:
        """Where the start tag at `i` ends (html.parser's own hook), refusing attribute floods."""
        end = super().check_for_whole_start_tag(i)
        if end > i + _LONG_TAG_CHARS:
            _check_tag_spaces(self.rawdata, i, end)
        return end

    def finish(self) -> None:
        """Close the parser and keep what is still pending."""
        self.close()
        self._end_heading()
        self._flush()

    def _end_row(self) -> None:
        self._append("\n")
        self._row_has_text = False
        self._separator_due = False

    def _append(self, text: str) -> None:
        self._parts.append(text)
        self._size += len(text)
        self._sections.ensure_room(self._size)

    def _take(self) -> str:
        text = "".join(self._parts)
        self._parts = []
        self._size = 0
        return text

    def _flush(self) -> None:
        if self._parts:
            self._sections.add(self._take(), heading=self.heading)

    def _end_heading(self) -> None:
        if not self._in_heading:
            return
        self._in_heading = False
        text = self._take()
        label = heading_label(text)
        if label is not None:
            self.heading = label
            self._sections.add(text, heading=label)


def _check_tag_spaces(text: str, start: int, end: int) -> None:
    if sum(text.count(space, start, end) for space in " \t\n\r\f") > _MAX_TAG_SPACES:
        raise ExtractionError("unreadable", "The HTML has a tag with too many attributes.")


def read_html(path: Path, limits: ExtractionLimits) -> Extracted:
    """An HTML file's sections, each under the heading it follows."""
    sections = Sections(limits.max_chars)
    parser = HtmlText(sections)
    size = _HTML_FEED_CHARS
    with open_text(path) as stream:
        while data := stream.read(size):
            parser.feed(data)
            pending = parser.rawdata
            if len(pending) > _LONG_TAG_CHARS and _START_TAG.match(pending):
                _check_tag_spaces(pending, 0, len(pending))
            # html.parser rescans an unfinished tag on every feed: growing the next piece with it
            # keeps the total work linear in the file's size.
            size = max(_HTML_FEED_CHARS, len(pending))
    parser.finish()
    return sections.finish()
