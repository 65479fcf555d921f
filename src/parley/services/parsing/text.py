"""Plain text, whatever the file is called: the whole file is one section."""

from __future__ import annotations

from parley.domain.documents import ParsedDocument, Section
from parley.services.parsing.budget import ParseBudget
from parley.services.parsing.common import build_document, decode_text


def parse_text(data: bytes, *, fallback_title: str, budget: ParseBudget) -> ParsedDocument:
    """Parse text in any detected encoding; the chunker splits it into sentences later."""
    text = decode_text(data)
    budget.check_chars(len(text))
    budget.add_section()
    return build_document(title=fallback_title, sections=[Section(text=text)])
