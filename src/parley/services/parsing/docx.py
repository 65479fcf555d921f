"""Word .docx (python-docx): one section per ``Heading N`` paragraph, tables as text rows."""

from __future__ import annotations

import io
import re
import zipfile
from typing import TYPE_CHECKING

from parley.domain.documents import ParsedDocument, Section
from parley.errors import ParseError
from parley.services.parsing.common import HeadingTrail, build_document, title_or

if TYPE_CHECKING:
    from docx.document import Document
    from docx.table import Table

_HEADING_STYLE = re.compile(r"^heading\s+([1-9])$", re.IGNORECASE)
# Refuse archives that inflate past this: a small upload must not exhaust memory.
_MAX_UNCOMPRESSED_BYTES = 200 * 1024 * 1024


def parse_docx(data: bytes, *, fallback_title: str) -> ParsedDocument:
    """Split on Heading styles; title from core properties, else the first Title/heading."""
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    document = _open(data)
    trail = HeadingTrail()
    sections: list[Section] = []
    body: list[str] = []
    first_heading: str | None = None
    for block in document.iter_inner_content():
        if isinstance(block, Table):
            body.append(_table_text(block))
            continue
        if not isinstance(block, Paragraph):
            continue
        style = (block.style.name if block.style is not None else "") or ""
        text = block.text.strip()
        level = _heading_level(style)
        if level is None:
            body.append(block.text)
            continue
        if text and first_heading is None:
            first_heading = text
        if level == 0:  # the Title style names the document; it opens no section
            continue
        sections.append(Section(text="\n\n".join(body), heading=trail.path))
        body.clear()
        trail.enter(level, text)
    sections.append(Section(text="\n\n".join(body), heading=trail.path))
    title = title_or(document.core_properties.title or first_heading, fallback_title)
    return build_document(title=title, sections=sections)


def _open(data: bytes) -> Document:
    from docx import Document as load_document

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if sum(info.file_size for info in archive.infolist()) > _MAX_UNCOMPRESSED_BYTES:
                raise ParseError("Word document is too large once decompressed")
        return load_document(io.BytesIO(data))
    except ParseError:
        raise
    except Exception as exc:  # BadZipFile, KeyError, lxml errors, PackageNotFoundError, …
        raise ParseError(f"corrupt Word document: {exc}") from exc


def _heading_level(style: str) -> int | None:
    if style.strip().lower() == "title":
        return 0
    match = _HEADING_STYLE.match(style.strip())
    return int(match.group(1)) if match else None


def _table_text(table: Table) -> str:
    rows = []
    for row in table.rows:
        seen: set[int] = set()
        cells = []
        for cell in row.cells:
            # A merged cell is returned once per grid column it spans; keep it once.
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            cells.append(" ".join(cell.text.split()))
        rows.append(" | ".join(cells))
    return "\n".join(rows)
