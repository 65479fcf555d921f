"""Markdown (CommonMark + tables, via markdown-it-py): one section per heading, with its path.

Headings are the parser's: ATX (``## Install``) and setext (``Install`` over ``-------``), but
never a ``#`` line inside a code block, an HTML block or a quote. Section text is the source
of each top-level block, so code blocks, lists and links stay whole and verbatim; tables
become ``cell | cell`` rows without the ``|---|`` delimiter row.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING

from parley.domain.documents import ParsedDocument, Section
from parley.services.parsing.budget import ParseBudget
from parley.services.parsing.common import HeadingTrail, build_document, decode_text, title_or

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.token import Token

# YAML front matter (Jekyll, Hugo, MkDocs): without this, "title: x" over its closing "---"
# would read as a setext heading.
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(.*?\n)(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.DOTALL)
_YAML_KEY = re.compile(r"^[A-Za-z_][\w-]*[ \t]*:", re.MULTILINE)
_YAML_TITLE = re.compile(r"^title[ \t]*:[ \t]*(.+?)[ \t]*$", re.MULTILINE)


@cache
def _parser() -> MarkdownIt:
    """The shared parser, built on first use (parsing does not mutate it)."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table")


def parse_markdown(data: bytes, *, fallback_title: str, budget: ParseBudget) -> ParsedDocument:
    """Split markdown on its top-level headings; title from front matter or the first h1.

    Sections are slices of the source, so the source's length bounds the extracted text.
    """
    text = decode_text(data)
    budget.check_chars(len(text))
    source, front_title = _strip_front_matter(text)
    del text
    lines = source.split("\n")
    tokens = _parser().parse(source)
    trail = HeadingTrail()
    sections: list[Section] = []
    blocks: list[str] = []
    title = front_title
    index = 0
    while index < len(tokens):
        token = tokens[index]
        end = _block_end(tokens, index)
        if _skipped(token):
            pass
        elif token.type == "heading_open":
            budget.add_section()
            sections.append(Section(text="\n\n".join(blocks), heading=trail.path))
            blocks.clear()
            text = _inline_text(tokens[index + 1])
            level = int(token.tag[1:])
            if level == 1 and title is None and text:
                title = text
            trail.enter(level, text)
        elif token.type == "table_open":
            blocks.append(_table_text(tokens[index:end]))
        elif token.map is not None:
            first, last = token.map
            blocks.append("\n".join(lines[first:last]).strip("\n"))
        index = end
    sections.append(Section(text="\n\n".join(blocks), heading=trail.path))
    return build_document(title=title_or(title, fallback_title), sections=sections)


def _strip_front_matter(text: str) -> tuple[str, str | None]:
    """Source without a leading YAML front matter block, and that block's ``title``."""
    match = _FRONT_MATTER.match(text)
    if match is None or not _YAML_KEY.search(match.group(1)):
        return text, None
    title = _YAML_TITLE.search(match.group(1))
    value = title.group(1).strip("'\"") if title else None
    return text[match.end() :], value or None


def _skipped(token: Token) -> bool:
    """Blocks with no readable text: thematic breaks and HTML comments (``<!-- TOC -->``)."""
    if token.type == "hr":
        return True
    return token.type == "html_block" and token.content.lstrip().startswith("<!--")


def _block_end(tokens: Sequence[Token], index: int) -> int:
    """Index just past the block opened at ``index`` (past the token itself otherwise)."""
    token = tokens[index]
    if token.nesting != 1:
        return index + 1
    depth = 0
    for position in range(index, len(tokens)):
        depth += tokens[position].nesting
        if depth == 0:
            return position + 1
    return len(tokens)


def _inline_text(token: Token) -> str:
    """Plain text of an inline token: markup dropped, code spans and image alt text kept."""
    parts: list[str] = []
    stack = list(reversed(token.children or []))
    while stack:
        child = stack.pop()
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "image":
            stack.extend(reversed(child.children or []))
    return " ".join("".join(parts).split())


def _table_text(tokens: Sequence[Token]) -> str:
    """One ``cell | cell`` line per row, header first."""
    rows: list[str] = []
    cells: list[str] = []
    for token in tokens:
        if token.type == "inline":
            cells.append(_inline_text(token))
        elif token.type == "tr_close":
            rows.append(" | ".join(cells))
            cells = []
    return "\n".join(rows)
