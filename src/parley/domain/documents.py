"""What parsing and chunking produce."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True, frozen=True)
class Section:
    """A run of text from a parsed document with where it came from.

    ``heading`` is the heading path (``"Install > Linux"``) for markdown/html, ``page`` the
    1-based page number for PDFs. Parsers emit sections in reading order.
    """

    text: str
    heading: str | None = None
    page: int | None = None


@dataclass(slots=True, frozen=True)
class ParsedDocument:
    """A document after parsing: a title and ordered sections."""

    title: str
    sections: list[Section]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, frozen=True)
class ChunkDraft:
    """A chunk ready to embed and store (no id yet)."""

    position: int
    text: str
    token_count: int
    heading: str | None = None
    page: int | None = None

    def meta(self) -> dict[str, Any]:
        """Location metadata stored with the chunk and used in citations and filters."""
        out: dict[str, Any] = {}
        if self.heading:
            out["section"] = self.heading
        if self.page is not None:
            out["page"] = self.page
        return out
