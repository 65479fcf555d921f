"""Helpers shared by the format parsers: text clean-up, heading paths, assembling documents."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from parley.domain.documents import ParsedDocument, Section
from parley.errors import ParseError
from parley.services.parsing.encoding import decode_bytes

PATH_SEPARATOR = " > "
_TRAILING_SPACE = re.compile(r"[ \t\f\v]+\n")
_MANY_BLANK_LINES = re.compile(r"\n{3,}")


def decode_text(data: bytes) -> str:
    """Text in UTF-8, a BOM-marked UTF, or a detected legacy encoding (latin-1, cp1252, …).

    Any BOM is removed and newlines are normalised to ``\\n``. Raises ``ParseError`` when
    the bytes are not text.
    """
    text, _ = decode_bytes(data)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def clean_text(text: str) -> str:
    """Trim line ends and collapse runs of blank lines, keeping paragraph breaks."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = _TRAILING_SPACE.sub("\n", text)
    return _MANY_BLANK_LINES.sub("\n\n", text).strip()


def title_or(candidate: str | None, fallback: str) -> str:
    """``candidate`` collapsed to one line when usable, else ``fallback``."""
    if candidate:
        one_line = " ".join(candidate.split())
        if one_line:
            return one_line
    return fallback


def build_document(
    *,
    title: str,
    sections: Iterable[Section],
    meta: dict[str, Any] | None = None,
) -> ParsedDocument:
    """Drop empty sections, clean their text, and refuse documents with no text at all."""
    kept = [
        Section(text=text, heading=section.heading, page=section.page)
        for section in sections
        if (text := clean_text(section.text))
    ]
    if not kept:
        raise ParseError("no extractable text")
    return ParsedDocument(title=title, sections=kept, meta=dict(meta or {}))


class HeadingTrail:
    """The stack of open headings; entering a level closes that level and deeper ones."""

    def __init__(self) -> None:
        """Start outside any heading."""
        self._stack: list[tuple[int, str]] = []

    def enter(self, level: int, text: str) -> None:
        """Record a heading of ``level`` (1 = top) with ``text``."""
        while self._stack and self._stack[-1][0] >= level:
            self._stack.pop()
        self._stack.append((level, " ".join(text.split())))

    @property
    def path(self) -> str | None:
        """The current heading path, or ``None`` before the first heading."""
        parts = [text for _, text in self._stack if text]
        return PATH_SEPARATOR.join(parts) if parts else None
