"""CSV and JSON: records rendered as ``key: value`` lines so they embed and match as text."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from parley.domain.documents import ParsedDocument, Section
from parley.errors import ParseError
from parley.services.parsing.common import build_document, decode_text, title_or

ROWS_PER_SECTION = 20
_SNIFF_SAMPLE_CHARS = 64 * 1024
_DELIMITERS = ",;\t|"
# Fields in an object that make a good heading for the section holding that object.
_LABEL_KEYS = ("title", "name", "question", "id")


def parse_csv(data: bytes, *, fallback_title: str) -> ParsedDocument:
    """One ``header: value; …`` line per row, grouped into sections of ~20 rows."""
    text = decode_text(data)
    try:
        rows = [row for row in csv.reader(io.StringIO(text), _dialect(text)) if any(row)]
    except csv.Error as exc:
        raise ParseError(f"malformed CSV: {exc}") from exc
    if len(rows) < 2:
        raise ParseError("CSV has no data rows")
    header = [name.strip() for name in rows[0]]
    lines = [_render_row(header, row) for row in rows[1:]]
    sections = [
        Section(
            text="\n".join(lines[start : start + ROWS_PER_SECTION]),
            heading=f"rows {start + 1}-{min(start + ROWS_PER_SECTION, len(lines))}",
        )
        for start in range(0, len(lines), ROWS_PER_SECTION)
    ]
    return build_document(title=fallback_title, sections=sections, meta={"rows": len(lines)})


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    try:
        return csv.Sniffer().sniff(text[:_SNIFF_SAMPLE_CHARS], delimiters=_DELIMITERS)
    except csv.Error:
        return csv.excel  # the sniffer gives up on one-column files; commas are the norm


def _render_row(header: list[str], row: list[str]) -> str:
    pairs = []
    for index, value in enumerate(row):
        value = " ".join(value.split())
        if not value:
            continue
        name = header[index] if index < len(header) and header[index] else f"column {index + 1}"
        pairs.append(f"{name}: {value}")
    return "; ".join(pairs)


def parse_json(data: bytes, *, fallback_title: str) -> ParsedDocument:
    """Flatten to ``a.b[0].c: value`` lines; a top-level array gets one section per item."""
    try:
        value = json.loads(decode_text(data))
        if isinstance(value, list):
            sections = [
                Section(text="\n".join(_flatten(item, "")), heading=_label(item, index))
                for index, item in enumerate(value)
            ]
        else:
            sections = [Section(text="\n".join(_flatten(value, "")))]
    except json.JSONDecodeError as exc:
        raise ParseError(f"invalid JSON: {exc}") from exc
    except RecursionError as exc:
        raise ParseError("JSON is nested too deeply") from exc
    title = value.get("title") if isinstance(value, dict) else None
    return build_document(
        title=title_or(title if isinstance(title, str) else None, fallback_title),
        sections=sections,
    )


def _flatten(value: Any, path: str) -> Iterator[str]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _flatten(child, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _flatten(child, f"{path}[{index}]")
    else:
        rendered = _scalar(value)
        yield f"{path}: {rendered}" if path else rendered


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return " ".join(value.split())
    return json.dumps(value)  # true/false/null and numbers as JSON spells them


def _label(item: Any, index: int) -> str:
    if isinstance(item, dict):
        for key in _LABEL_KEYS:
            label = item.get(key)
            if isinstance(label, str | int) and not isinstance(label, bool) and str(label).strip():
                return " ".join(str(label).split())
    return f"item {index + 1}"
