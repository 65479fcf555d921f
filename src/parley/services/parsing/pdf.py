"""PDF (pypdf): one section per page, numbered from 1."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from parley.domain.documents import ParsedDocument, Section
from parley.errors import ParseError
from parley.services.parsing.budget import ParseBudget, ParseCancelled
from parley.services.parsing.common import build_document, clean_text, title_or

if TYPE_CHECKING:
    from pypdf import PdfReader

# A first line longer than this is body text, not a usable title.
_MAX_TITLE_CHARS = 120


def parse_pdf(data: bytes, *, fallback_title: str, budget: ParseBudget) -> ParsedDocument:
    """Extract each page's text; title from metadata, else the first line of text.

    The page count is checked before any page is read, the text budget after each page.
    """
    reader = _open(data)
    limit = budget.limits.max_pdf_pages
    if len(reader.pages) > limit:
        raise budget.too_large("pages", limit, "max_pdf_pages")
    pages: list[str] = []
    try:
        for page in reader.pages:
            budget.tick()
            pages.append(clean_text(page.extract_text() or ""))
            if pages[-1]:
                budget.add_chars(len(pages[-1]))
                budget.add_section()
    except (ParseError, ParseCancelled, MemoryError):
        raise
    except Exception as exc:  # pypdf raises many unrelated types on malformed streams
        raise ParseError(f"corrupt PDF: cannot extract text ({exc})") from exc
    if not any(pages):
        raise ParseError("PDF has no extractable text (scanned images need OCR)")
    sections = [Section(text=text, page=number) for number, text in enumerate(pages, start=1)]
    title = _metadata_title(reader) or _first_line(pages)
    meta: dict[str, Any] = {"pages": len(pages)}
    return build_document(title=title_or(title, fallback_title), sections=sections, meta=meta)


def _open(data: bytes) -> PdfReader:
    from pypdf import PdfReader  # imported lazily: only PDF uploads pay for it

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise ParseError("PDF is encrypted with a password")
        _ = len(reader.pages)  # forces the page tree to load so corruption surfaces here
    except (ParseError, MemoryError):
        raise
    except Exception as exc:  # PdfReadError, DependencyError (AES without crypto lib), …
        raise ParseError(f"corrupt or unreadable PDF: {exc}") from exc
    return reader


def _metadata_title(reader: PdfReader) -> str | None:
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except Exception:  # a broken info dictionary should not fail an otherwise good PDF
        return None
    return str(title) if title and str(title).strip() else None


def _first_line(pages: list[str]) -> str | None:
    for text in pages:
        for line in text.split("\n"):
            if line.strip():
                line = line.strip()
                return line if len(line) <= _MAX_TITLE_CHARS else None
    return None
