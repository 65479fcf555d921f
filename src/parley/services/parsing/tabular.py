"""CSV and JSON: records rendered as ``key: value`` lines so they embed and match as text.

Both render more text than they read (a header name is repeated on every row, a path on
every value), so the text budget is charged per rendered line, as it is rendered.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from typing import Any

from parley.domain.documents import ParsedDocument, Section
from parley.errors import CsvRowTooWide, NestingTooDeep, ParseError
from parley.services.parsing.budget import ParseBudget, setting
from parley.services.parsing.common import build_document, decode_text, title_or

ROWS_PER_SECTION = 20
# csv.Sniffer's regexes are quadratic on quote-heavy lines (64 KiB of `,"a` took 26 s):
# a few KiB of whole lines are plenty to tell the delimiter.
_SNIFF_SAMPLE_CHARS = 8 * 1024
_DELIMITERS = ",;\t|"
# Fields in an object that make a good heading for the section holding that object.
_LABEL_KEYS = ("title", "name", "question", "id")
# A JSON string literal, to blank out before counting structure characters.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_JSON_BRACKETS = re.compile(r"[\[{]+|[\]}]+")


def parse_csv(data: bytes, *, fallback_title: str, budget: ParseBudget) -> ParsedDocument:
    """One ``header: value; …`` line per row, grouped into sections of ~20 rows."""
    text = decode_text(data)
    dialect = _dialect(text)
    lines = _BoundedLines(text, str(dialect.delimiter), budget.limits.max_csv_fields)
    reader = csv.reader(lines, dialect)
    header: list[str] | None = None
    sections: list[Section] = []
    group: list[str] = []
    rows = 0
    try:
        for row in reader:
            lines.row_done()
            if not any(row):
                continue
            if header is None:
                header = [name.strip() for name in row]
                continue
            rows += 1
            if rows > budget.limits.max_csv_rows:
                raise budget.too_large("CSV rows", budget.limits.max_csv_rows, "max_csv_rows")
            line = _render_row(header, row)
            budget.add_chars(len(line) + 1)
            group.append(line)
            if len(group) == ROWS_PER_SECTION:
                sections.append(_rows_section(group, rows, budget))
                group = []
    except csv.Error as exc:
        raise ParseError(f"malformed CSV: {exc}") from exc
    if group:
        sections.append(_rows_section(group, rows, budget))
    if not sections:
        raise ParseError("CSV has no data rows")
    return build_document(title=fallback_title, sections=sections, meta={"rows": rows})


class _BoundedLines:
    """The lines of a CSV text, refusing a row before the csv module builds it.

    The reader pulls lines until a row is complete; the delimiters on those lines bound its
    field count from above (one inside quotes counts too), so an over-wide row fails before
    its millions of fields exist.
    """

    def __init__(self, text: str, delimiter: str, max_fields: int) -> None:
        self._lines = iter(io.StringIO(text))
        self._delimiter = delimiter
        self._max_fields = max_fields
        self._pending = 0

    def __iter__(self) -> _BoundedLines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self._pending += line.count(self._delimiter)
        if self._pending >= self._max_fields:
            raise CsvRowTooWide(
                f"a CSV row has more than {self._max_fields} fields "
                f"(limit {setting('max_csv_fields')})"
            )
        return line

    def row_done(self) -> None:
        """The reader returned a row: the next one starts from zero."""
        self._pending = 0


def _rows_section(group: list[str], rows: int, budget: ParseBudget) -> Section:
    budget.add_section()
    return Section(text="\n".join(group), heading=f"rows {rows - len(group) + 1}-{rows}")


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    sample = text[:_SNIFF_SAMPLE_CHARS]
    if len(text) > len(sample) and "\n" in sample:
        sample = sample[: sample.rindex("\n") + 1]
    try:
        return csv.Sniffer().sniff(sample, delimiters=_DELIMITERS)
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


def parse_json(data: bytes, *, fallback_title: str, budget: ParseBudget) -> ParsedDocument:
    """Flatten to ``a.b[0].c: value`` lines; a top-level array gets one section per item."""
    text = decode_text(data)
    _check_json_shape(text, budget)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ParseError(f"invalid JSON: {exc}") from exc
    except RecursionError as exc:
        raise NestingTooDeep("JSON is nested too deeply") from exc
    except ValueError as exc:  # e.g. an integer over Python's 4300-digit conversion limit
        raise ParseError(f"invalid JSON: {exc}") from exc
    del text
    items = value if isinstance(value, list) else [value]
    sections = []
    for index, item in enumerate(items):
        budget.add_section()
        heading = _label(item, index) if isinstance(value, list) else None
        sections.append(Section(text="\n".join(_flatten(item, "", budget)), heading=heading))
    title = value.get("title") if isinstance(value, dict) else None
    return build_document(
        title=title_or(title if isinstance(title, str) else None, fallback_title),
        sections=sections,
    )


def _check_json_shape(text: str, budget: ParseBudget) -> None:
    """Refuse too many values or too deep a nesting before ``json.loads`` builds anything.

    Strings are blanked out first (C-speed regex), then values are counted from the
    separators and openers, and depth from runs of brackets: no per-character Python loop.
    """
    limits = budget.limits
    bare = _JSON_STRING.sub('""', text)
    values = bare.count(",") + bare.count("[") + bare.count("{") + 1
    if values > limits.max_json_nodes:
        raise budget.too_large("JSON values", limits.max_json_nodes, "max_json_nodes")
    budget.tick()
    depth = 0
    for run in _JSON_BRACKETS.finditer(bare):
        step = run.end() - run.start()
        depth += step if bare[run.start()] in "[{" else -step
        if depth > limits.max_json_depth:
            raise NestingTooDeep(
                f"JSON is nested deeper than {limits.max_json_depth} levels "
                f"(limit {setting('max_json_depth')})"
            )


def _flatten(value: Any, path: str, budget: ParseBudget) -> Iterator[str]:
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _flatten(child, f"{path}.{key}" if path else str(key), budget)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _flatten(child, f"{path}[{index}]", budget)
    else:
        rendered = _scalar(value)
        line = f"{path}: {rendered}" if path else rendered
        budget.add_chars(len(line) + 1)
        yield line


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
