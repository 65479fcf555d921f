"""HTML: boilerplate removed, one section per h1-h6 heading, with the heading path.

The markup is streamed through lxml's HTML parser into a target that keeps only the text it
will emit: no tree is built, so memory follows the extracted text, and the element count,
nesting depth and text size are checked at every element.
"""

from __future__ import annotations

import re

from lxml import etree

from parley.domain.documents import ParsedDocument, Section
from parley.errors import NestingTooDeep, ParseError
from parley.services.parsing.budget import ParseBudget, setting
from parley.services.parsing.common import HeadingTrail, build_document, decode_text, title_or

_DROPPED_TAGS = frozenset(
    {"script", "style", "nav", "noscript", "template", "svg", "iframe", "head"}
)
_HEADINGS = {f"h{level}": level for level in range(1, 7)}
# Tags whose content starts and ends a line; everything else flows inline.
_BLOCK_TAGS = frozenset(
    {
        "address", "article", "aside", "blockquote", "body", "br", "caption", "dd", "details",
        "div", "dl", "dt", "fieldset", "figcaption", "figure", "footer", "form", "header",
        "hr", "li", "main", "ol", "p", "pre", "section", "summary", "table", "tbody", "td",
        "tfoot", "th", "thead", "tr", "ul",
    }
)  # fmt: skip
_CELL_TAGS = frozenset({"td", "th"})
_WHITESPACE = re.compile(r"\s+")
_FEED_CHARS = 64 * 1024
_MAX_TITLE_CHARS = 4096


def parse_html(data: bytes, *, fallback_title: str, budget: ParseBudget) -> ParsedDocument:
    """Extract readable text from HTML, split on headings; title from <title> or first h1."""
    text = decode_text(data)
    target = _TextTarget(budget)
    parser = etree.HTMLParser(target=target, recover=True, no_network=True)
    try:
        for start in range(0, len(text), _FEED_CHARS):
            parser.feed(text[start : start + _FEED_CHARS])
            budget.tick()
        parser.close()
    except etree.LxmlError as exc:
        raise ParseError(f"unreadable HTML: {exc}") from exc
    del text
    title = title_or(target.page_title or target.h1_title, fallback_title)
    return build_document(title=title, sections=target.sections)


class _TextTarget:
    """lxml parser target: a walk of the document in order, keeping only the text it emits.

    Text of ``_DROPPED_TAGS`` is skipped; a heading closes the current section and its text
    (outside dropped tags) becomes the next section's heading path; block elements start and
    end lines, table cells are separated by ``|``. The first <title> and the first <h1>
    (wherever they are) are remembered for the document title.
    """

    def __init__(self, budget: ParseBudget) -> None:
        self._budget = budget
        self._limits = budget.limits
        self.sections: list[Section] = []
        self.page_title = ""
        self.h1_title = ""
        self._trail = HeadingTrail()
        self._parts: list[str] = []
        self._pending: list[str] = []  # data events of the current text node
        self._depth = 0
        self._nodes = 0
        self._dropped_depth = 0  # > 0 inside a dropped element
        self._heading: tuple[int, int] | None = None  # (level, depth) of the open heading
        self._heading_strings: list[str] = []
        self._title_depth: int | None = None  # depth of the first <title> while open
        self._title_strings: list[str] | None = None
        self._h1_depth: int | None = None
        self._h1_strings: list[str] | None = None

    def start(self, tag: str, attrib: object) -> None:
        """An element opens."""
        self._flush_text()
        self._depth += 1
        self._nodes += 1
        if self._depth > self._limits.max_html_depth:
            raise NestingTooDeep(
                f"HTML elements are nested deeper than {self._limits.max_html_depth} levels "
                f"(limit {setting('max_html_depth')})"
            )
        if self._nodes > self._limits.max_html_nodes:
            raise self._budget.too_large(
                "HTML elements", self._limits.max_html_nodes, "max_html_nodes"
            )
        if self._nodes % 1024 == 0:
            self._budget.tick()
        if tag == "title" and self._title_strings is None:
            self._title_depth, self._title_strings = self._depth, []
        if tag == "h1" and self._h1_strings is None:
            self._h1_depth, self._h1_strings = self._depth, []
        if self._dropped_depth or tag in _DROPPED_TAGS:
            self._dropped_depth += 1
            return
        if self._heading is not None:
            return
        level = _HEADINGS.get(tag)
        if level is not None:
            self._close_section()
            self._heading, self._heading_strings = (level, self._depth), []
            return
        if tag in _CELL_TAGS:
            self._emit(" | ")
        elif tag in _BLOCK_TAGS:
            self._emit("\n")

    def end(self, tag: str) -> None:
        """An element closes (lxml closes implied and unclosed elements too)."""
        self._flush_text()
        depth = self._depth
        self._depth -= 1
        if self._title_depth == depth:
            self._title_depth = None
            self.page_title = _strings_text(self._title_strings or [])
        if self._h1_depth == depth:
            self._h1_depth = None
            self.h1_title = _strings_text(self._h1_strings or [])
        if self._dropped_depth:
            self._dropped_depth -= 1
            return
        if self._heading is not None:
            level, heading_depth = self._heading
            if heading_depth == depth:
                self._heading = None
                self._trail.enter(level, _strings_text(self._heading_strings))
            return
        if tag in _BLOCK_TAGS and tag not in _CELL_TAGS:
            self._emit("\n")

    def data(self, text: str) -> None:
        """Text; lxml may split one text node over several calls, so it is gathered first."""
        self._pending.append(text)

    def comment(self, text: str) -> None:
        """Comments are not content (but they do end a text node)."""
        self._flush_text()

    def pi(self, target: str, data: str | None = None) -> None:
        """Processing instructions are not content."""
        self._flush_text()

    def close(self) -> None:
        """End of input: the text after the last heading is the last section."""
        self._flush_text()
        self._close_section()

    def _flush_text(self) -> None:
        if not self._pending:
            return
        node = "".join(self._pending)
        self._pending.clear()
        # A title longer than this is not a title; keeping it would bypass the text budget.
        if self._title_depth is not None and self._title_strings is not None:
            _append_capped(self._title_strings, node)
        if self._h1_depth is not None and self._h1_strings is not None:
            _append_capped(self._h1_strings, node)
        if self._dropped_depth:
            return
        if self._heading is not None:
            self._budget.add_chars(len(node))
            self._heading_strings.append(node)
            return
        self._emit(_WHITESPACE.sub(" ", node))

    def _emit(self, piece: str) -> None:
        self._budget.add_chars(len(piece))
        self._parts.append(piece)

    def _close_section(self) -> None:
        self._budget.add_section()
        self.sections.append(Section(text=_join(self._parts), heading=self._trail.path))
        self._parts.clear()


def _append_capped(strings: list[str], node: str) -> None:
    if sum(map(len, strings)) < _MAX_TITLE_CHARS:
        strings.append(node[:_MAX_TITLE_CHARS])


def _strings_text(strings: list[str]) -> str:
    """What ``Tag.get_text(" ", strip=True)`` gave: stripped non-empty strings, spaced."""
    return " ".join(s.strip() for s in strings if s.strip())


def _join(parts: list[str]) -> str:
    """Lines from block boundaries; each non-empty line becomes its own paragraph."""
    lines = (line.strip(" |").strip() for line in "".join(parts).split("\n"))
    return "\n\n".join(line for line in lines if line)
