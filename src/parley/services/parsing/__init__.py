"""Document parsing: sniff the real type of an upload, then turn it into ordered sections.

Parsers are pure and CPU-bound (bytes in, ``ParsedDocument`` out) and work within a
``ParseBudget``; ingestion runs them in a memory-capped parser process, never on the event
loop (see ``parley.services.ingest``).
"""

from __future__ import annotations

from typing import Protocol

from parley.domain.documents import ParsedDocument
from parley.services.parsing import sniff
from parley.services.parsing.budget import ParseBudget
from parley.services.parsing.common import title_or
from parley.services.parsing.docx import parse_docx
from parley.services.parsing.html import parse_html
from parley.services.parsing.markdown import parse_markdown
from parley.services.parsing.pdf import parse_pdf
from parley.services.parsing.sniff import SUPPORTED, detect_mime, supported_types
from parley.services.parsing.tabular import parse_csv, parse_json
from parley.services.parsing.text import parse_text

__all__ = ["SUPPORTED", "ParseBudget", "detect_mime", "parse_document", "supported_types"]


class _Parser(Protocol):
    def __call__(
        self, data: bytes, *, fallback_title: str, budget: ParseBudget
    ) -> ParsedDocument: ...


_PARSERS: dict[str, _Parser] = {
    sniff.TEXT: parse_text,
    sniff.MARKDOWN: parse_markdown,
    sniff.HTML: parse_html,
    sniff.PDF: parse_pdf,
    sniff.DOCX: parse_docx,
    sniff.CSV: parse_csv,
    sniff.JSON: parse_json,
}


def parse_document(
    data: bytes,
    *,
    filename: str,
    declared_mime: str | None = None,
    budget: ParseBudget | None = None,
) -> ParsedDocument:
    """Detect the type of ``data`` (see ``detect_mime``) and parse it into sections.

    Raises ``UnsupportedMediaType`` for unsupported or mismatched types, ``ParseError`` for
    corrupt, encrypted or text-less files, and a ``LimitExceeded`` subclass (a ``ParseError``)
    as soon as the file goes over ``budget`` (default limits when omitted).
    ``meta["mime"]`` records the detected type.
    """
    mime = detect_mime(data, filename=filename, declared_mime=declared_mime)
    budget = budget or ParseBudget()
    document = _PARSERS[mime](data, fallback_title=_stem(filename), budget=budget)
    return ParsedDocument(
        title=document.title,
        sections=document.sections,
        meta={**document.meta, "mime": mime},
    )


def _stem(filename: str) -> str:
    name = sniff.basename(filename)
    dot = name.rfind(".")
    return title_or(name[:dot] if dot > 0 else name, "Untitled")
