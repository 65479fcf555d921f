"""WordprocessingML pieces of a .docx: package relationships, styles, paragraph and table text.

Small parts (relationships, styles, core properties) are read whole, each capped; the main
document is streamed by ``docx.py``, which hands each finished top-level block here.
"""

from __future__ import annotations

import posixpath
import zipfile
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from parley.errors import DocumentTooLarge

if TYPE_CHECKING:
    from lxml.etree import _Element

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_RELS = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"
_DC_TITLE = "{http://purl.org/dc/elements/1.1/}title"

BODY = f"{_W}body"
PARAGRAPH = f"{_W}p"
TABLE = f"{_W}tbl"
TEXT = f"{_W}t"
_ROW, _CELL, _RUN, _HYPERLINK = f"{_W}tr", f"{_W}tc", f"{_W}r", f"{_W}hyperlink"
_VAL, _TYPE = f"{_W}val", f"{_W}type"
# Run content and its text, as python-docx reads it (a page or column break is no text).
_RUN_TEXT = {f"{_W}tab": "\t", f"{_W}cr": "\n", f"{_W}noBreakHyphen": "-", f"{_W}ptab": "\t"}
_BREAK = f"{_W}br"
_ON = ("1", "true", "on")
# Styles, relationships and core properties are a few KiB to a few hundred KiB.
_MAX_SMALL_PART_BYTES = 16 * 1024 * 1024


def _read_xml(archive: zipfile.ZipFile, name: str) -> _Element | None:
    """A small part parsed whole, or None when absent; entities are never expanded."""
    from lxml import etree

    try:
        info = archive.getinfo(name)
    except KeyError:
        return None
    if info.file_size > _MAX_SMALL_PART_BYTES:
        raise DocumentTooLarge(f"{name} is larger than {_MAX_SMALL_PART_BYTES} bytes")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    return etree.fromstring(archive.read(name), parser)


def relationship_targets(archive: zipfile.ZipFile, rels: str, base: str) -> dict[str, str]:
    """Relationship type (last path segment) → part name, resolved against ``base``."""
    root = _read_xml(archive, rels)
    targets: dict[str, str] = {}
    if root is None:
        return targets
    for rel in root.iter(_RELS):
        kind = (rel.get("Type") or "").rsplit("/", 1)[-1]
        target = rel.get("Target") or ""
        if not kind or not target or rel.get("TargetMode") == "External":
            continue
        path = target.lstrip("/") if target.startswith("/") else posixpath.join(base, target)
        targets.setdefault(kind, posixpath.normpath(path))
    return targets


def core_title(archive: zipfile.ZipFile, part: str | None) -> str | None:
    """``dc:title`` of the core properties, when there is one."""
    root = _read_xml(archive, part or "docProps/core.xml")
    if root is None:
        return None
    title = root.find(_DC_TITLE)
    return title.text if title is not None and title.text else None


@dataclass(slots=True)
class Styles:
    """Paragraph style names by id, and the default paragraph style's name."""

    names: dict[str, str] = field(default_factory=dict)
    default: str = ""

    @classmethod
    def read(cls, archive: zipfile.ZipFile, part: str | None) -> Styles:
        """The paragraph styles of ``part`` (``word/styles.xml`` when not named)."""
        root = _read_xml(archive, part or "word/styles.xml")
        styles = cls()
        if root is None:
            return styles
        for style in root.iter(f"{_W}style"):
            if (style.get(_TYPE) or "paragraph") != "paragraph":
                continue
            name_element = style.find(f"{_W}name")
            name = (name_element.get(_VAL) if name_element is not None else None) or ""
            style_id = style.get(f"{_W}styleId")
            if style_id is not None:
                styles.names.setdefault(style_id, name)
            if style.get(f"{_W}default") in _ON:
                styles.default = name  # the spec says the last default wins
        return styles

    def name(self, style_id: str | None) -> str:
        """Name of a paragraph style id; unknown or absent ids get the default style."""
        if style_id is None:
            return self.default
        return self.names.get(style_id, self.default)


def paragraph_style(paragraph: _Element) -> str | None:
    """The ``w:pStyle`` id of a paragraph, if it has one."""
    properties = paragraph.find(f"{_W}pPr")
    style = properties.find(f"{_W}pStyle") if properties is not None else None
    return style.get(_VAL) if style is not None else None


def paragraph_text(paragraph: _Element) -> str:
    """Text of the paragraph's runs and hyperlinked runs, in order."""
    parts: list[str] = []
    for child in paragraph:
        if child.tag == _RUN:
            parts.append(_run_text(child))
        elif child.tag == _HYPERLINK:
            parts.extend(_run_text(run) for run in child if run.tag == _RUN)
    return "".join(parts)


def _run_text(run: _Element) -> str:
    parts: list[str] = []
    for child in run:
        tag = child.tag
        if tag == TEXT:
            parts.append(child.text or "")
        elif tag == _BREAK:
            parts.append("\n" if child.get(_TYPE, "textWrapping") == "textWrapping" else "")
        elif isinstance(tag, str) and tag in _RUN_TEXT:
            parts.append(_RUN_TEXT[tag])
    return "".join(parts)


def table_text(table: _Element) -> str:
    """One ``cell | cell`` line per row; nested tables inside cells are not read."""
    rows: list[str] = []
    above: dict[int, str] = {}  # grid offset → text of the cell there in the previous row
    for row in table.iterchildren(_ROW):
        offset = _grid_before(row)
        current: dict[int, str] = {}
        cells: list[str] = []
        for cell in row.iterchildren(_CELL):
            span, merge = _cell_layout(cell)
            if merge == "continue":  # a vertical merge shows the text of the cell it continues
                text = above.get(offset, "")
            else:
                paragraphs = (paragraph_text(p) for p in cell.iterchildren(PARAGRAPH))
                text = " ".join("\n".join(paragraphs).split())
            current[offset] = text
            cells.append(text)
            offset += span
        rows.append(" | ".join(cells))
        above = current
    return "\n".join(rows)


def _grid_before(row: _Element) -> int:
    properties = row.find(f"{_W}trPr")
    before = properties.find(f"{_W}gridBefore") if properties is not None else None
    return _int(before.get(_VAL) if before is not None else None, 0)


def _cell_layout(cell: _Element) -> tuple[int, str | None]:
    """(grid columns spanned, vertical merge: None, "restart" or "continue")."""
    properties = cell.find(f"{_W}tcPr")
    if properties is None:
        return 1, None
    span = properties.find(f"{_W}gridSpan")
    merge = properties.find(f"{_W}vMerge")
    width = _int(span.get(_VAL) if span is not None else None, 1)
    return max(width, 1), None if merge is None else merge.get(_VAL, "continue")


def _int(value: str | None, default: int) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default
