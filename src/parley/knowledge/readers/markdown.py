"""The Markdown reader, on markdown-it (CommonMark with tables): a file's text without its markup.

Headings of any level label the text under them and are sections themselves; paragraphs and code
blocks are sections; a list, item markers kept, and a table, a line per row with cells joined by
" | ", are grouped into blocks of bounded size; raw HTML blocks are read by the HTML reader.
markdown-it parses a whole file at once, so the file's size is bounded before it is parsed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, Final

from markdown_it import MarkdownIt

from parley.knowledge.extraction import ExtractionError
from parley.knowledge.readers.common import (
    ANY_SPACE,
    LINE_BLOCK_CHARS,
    LineBlock,
    Sections,
    clean,
    heading_label,
    open_text,
)
from parley.knowledge.readers.html import HtmlText

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from markdown_it.token import Token

    from parley.knowledge.extraction import Extracted, ExtractionLimits

# Markdown is parsed whole (markdown-it has no streaming mode); markup beyond this many times
# `max_chars` cannot plausibly be text we would keep, so the file fails before it is parsed.
_MARKDOWN_MARKUP_FACTOR: Final = 4


def _inline_text(token: Token) -> str:
    """An inline token's text without its markup: link text, code, image alt text."""
    parts: list[str] = []
    for child in token.children or []:
        if child.type in {"text", "code_inline", "image"}:
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
    return "".join(parts)


class _MarkdownText:
    """Markdown's token stream to sections: headings (any level) label the text under them and
    are sections themselves; paragraphs, code blocks, lists and tables are kept as text."""

    def __init__(self, sections: Sections) -> None:
        self._sections = sections
        self._heading: str | None = None
        self._lists = 0
        self._item_marker: str | None = None
        self._block = LineBlock(sections, max_chars=LINE_BLOCK_CHARS)
        self._cells: list[str] = []

    def read(self, tokens: list[Token]) -> None:
        """Turn the parsed tokens into sections."""
        for index, token in enumerate(tokens):
            handler = self._handlers.get(token.type)
            if handler is not None:
                handler(self, token, tokens[index + 1] if index + 1 < len(tokens) else None)
        self._block.flush()

    def _text(self, text: str) -> None:
        if self._lists:
            # A list item's first paragraph carries its marker; the list stays one text block.
            marker, self._item_marker = self._item_marker, None
            for line in filter(None, clean(text).split("\n")):
                self._block.add(f"{marker} {line}" if marker else line)
                marker = None
        else:
            self._sections.add(text, heading=self._heading)

    def _on_heading(self, token: Token, following: Token | None) -> None:
        text = _inline_text(following) if following is not None else ""
        label = heading_label(text)
        if label is not None:
            self._block.flush()
            self._heading = label
            self._block.heading = label
            self._sections.add(text, heading=label)

    def _on_paragraph(self, token: Token, following: Token | None) -> None:
        if following is not None and following.type == "inline":
            self._text(_inline_text(following))

    def _on_code(self, token: Token, following: Token | None) -> None:
        self._text(token.content)

    def _on_list_open(self, token: Token, following: Token | None) -> None:
        if not self._lists:
            self._block.flush()
        self._lists += 1

    def _on_list_close(self, token: Token, following: Token | None) -> None:
        self._lists = max(0, self._lists - 1)
        if not self._lists:
            self._block.flush()

    def _on_item(self, token: Token, following: Token | None) -> None:
        self._item_marker = f"{token.info}{token.markup}" if token.info else token.markup

    def _on_table_open(self, token: Token, following: Token | None) -> None:
        self._block.flush()

    def _on_row_open(self, token: Token, following: Token | None) -> None:
        self._cells = []

    def _on_cell(self, token: Token, following: Token | None) -> None:
        if following is not None and following.type == "inline":
            self._cells.append(ANY_SPACE.sub(" ", _inline_text(following)).strip())

    def _on_row_close(self, token: Token, following: Token | None) -> None:
        if line := clean(" | ".join(cell for cell in self._cells if cell)):
            self._block.add(line)

    def _on_table_close(self, token: Token, following: Token | None) -> None:
        self._block.flush()

    def _on_html(self, token: Token, following: Token | None) -> None:
        self._block.flush()
        parser = HtmlText(self._sections, heading=self._heading)
        parser.feed(token.content)
        parser.finish()
        self._heading = parser.heading
        self._block.heading = parser.heading

    _handlers: ClassVar[dict[str, Callable[[_MarkdownText, Token, Token | None], None]]] = {
        "heading_open": _on_heading,
        "paragraph_open": _on_paragraph,
        "fence": _on_code,
        "code_block": _on_code,
        "bullet_list_open": _on_list_open,
        "ordered_list_open": _on_list_open,
        "bullet_list_close": _on_list_close,
        "ordered_list_close": _on_list_close,
        "list_item_open": _on_item,
        "table_open": _on_table_open,
        "tr_open": _on_row_open,
        "th_open": _on_cell,
        "td_open": _on_cell,
        "tr_close": _on_row_close,
        "table_close": _on_table_close,
        "html_block": _on_html,
    }


def read_markdown(path: Path, limits: ExtractionLimits) -> Extracted:
    """A Markdown file's sections, each under the heading it follows."""
    sections = Sections(limits.max_chars)
    ceiling = limits.max_chars * _MARKDOWN_MARKUP_FACTOR
    with open_text(path) as stream:
        source = stream.read(ceiling + 1)
    if len(source) > ceiling:
        raise ExtractionError(
            "too_much_text", f"The file holds more than {limits.max_chars} characters of text."
        )
    # The CommonMark preset caps nesting (maxNesting 20), so hostile nesting cannot recurse deep.
    parser = MarkdownIt("commonmark").enable("table")
    _MarkdownText(sections).read(parser.parse(source))
    return sections.finish()
