"""HTML: boilerplate removed, one section per h1-h6 heading, with the heading path."""

from __future__ import annotations

import re

from bs4 import BeautifulSoup
from bs4.element import NavigableString, PageElement, PreformattedString, Tag

from parley.domain.documents import ParsedDocument, Section
from parley.services.parsing.common import HeadingTrail, build_document, decode_text, title_or

_DROPPED_TAGS = ("script", "style", "nav", "noscript", "template", "svg", "iframe", "head")
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
_LINE_BREAK = object()  # marker pushed on the walk stack to close a block element


def parse_html(data: bytes, *, fallback_title: str) -> ParsedDocument:
    """Extract readable text from HTML, split on headings; title from <title> or first h1."""
    soup = BeautifulSoup(decode_text(data), "lxml")
    title_tag = soup.find("title")
    page_title = title_tag.get_text(" ", strip=True) if title_tag else ""
    first_h1 = soup.find("h1")
    h1_title = first_h1.get_text(" ", strip=True) if first_h1 else ""
    for tag in soup.find_all(_DROPPED_TAGS):
        tag.decompose()
    root = soup.body or soup
    sections = _sections(root)
    return build_document(title=title_or(page_title or h1_title, fallback_title), sections=sections)


def _sections(root: Tag | BeautifulSoup) -> list[Section]:
    """Walk the tree in document order (iteratively: deep nesting must not recurse)."""
    trail = HeadingTrail()
    sections: list[Section] = []
    parts: list[str] = []
    stack: list[object] = list(reversed(root.contents))
    while stack:
        item = stack.pop()
        if item is _LINE_BREAK:
            parts.append("\n")
        elif isinstance(item, NavigableString):
            # Comments, doctypes and CDATA are PreformattedString subclasses: not content.
            if not isinstance(item, PreformattedString):
                parts.append(_WHITESPACE.sub(" ", str(item)))
        elif isinstance(item, Tag):
            level = _HEADINGS.get(item.name)
            if level is not None:
                sections.append(Section(text=_join(parts), heading=trail.path))
                parts.clear()
                trail.enter(level, item.get_text(" ", strip=True))
                continue
            if item.name in _CELL_TAGS:
                parts.append(" | ")
            if item.name in _BLOCK_TAGS and item.name not in _CELL_TAGS:
                parts.append("\n")
                stack.append(_LINE_BREAK)
            children: list[PageElement] = list(item.contents)
            stack.extend(reversed(children))
    sections.append(Section(text=_join(parts), heading=trail.path))
    return sections


def _join(parts: list[str]) -> str:
    """Lines from block boundaries; each non-empty line becomes its own paragraph."""
    lines = (line.strip(" |").strip() for line in "".join(parts).split("\n"))
    return "\n\n".join(line for line in lines if line)
