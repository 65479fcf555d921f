"""Document parsing: sniff the real type of an upload, then turn it into ordered sections.

Parsers are pure and CPU-bound (bytes in, ``ParsedDocument`` out); callers run them in a
thread or the worker, never on the event loop.
"""

from __future__ import annotations

from typing import Protocol

from parley.domain.documents import ParsedDocument
from parley.services.parsing import sniff
from parley.services.parsing.common import title_or
from parley.services.parsing.docx import parse_docx
from parley.services.parsing.html import parse_html
from parley.services.parsing.markdown import parse_markdown
from parley.services.parsing.pdf import parse_pdf
from parley.services.parsing.sniff import SUPPORTED, detect_mime, supported_types
from parley.services.parsing.tabular import parse_csv, parse_json
from parley.services.parsing.text import parse_text

__all__ = ["SUPPORTED", "detect_mime", "parse_document", "supported_types"]


class _Parser(Protocol):
    def __call__(self, data: bytes, *, fallback_title: str) -> ParsedDocument: ...


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
    data: bytes, *, filename: str, declared_mime: str | None = None
) -> ParsedDocument:
    """Detect the type of ``data`` (see ``detect_mime``) and parse it into sections.

    Raises ``UnsupportedMediaType`` for unsupported or mismatched types and ``ParseError``
    for corrupt, encrypted or text-less files. ``meta["mime"]`` records the detected type.
    """
    mime = detect_mime(data, filename=filename, declared_mime=declared_mime)
    document = _PARSERS[mime](data, fallback_title=_stem(filename))
    return ParsedDocument(
        title=document.title,
        sections=document.sections,
        meta={**document.meta, "mime": mime},
    )


def _stem(filename: str) -> str:
    name = sniff.basename(filename)
    dot = name.rfind(".")
    return title_or(name[:dot] if dot > 0 else name, "Untitled")
