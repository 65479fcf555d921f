"""Parsing: every example parses correctly, and content sniffing rejects disguised files."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import pytest
from pypdf import PdfWriter

from parley.domain.documents import ParsedDocument
from parley.errors import NestingTooDeep, ParseError, UnsupportedMediaType
from parley.services.parsing import detect_mime, parse_document

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DOCS = EXAMPLES / "docs"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 32


def parse_example(name: str) -> ParsedDocument:
    return parse_document((DOCS / name).read_bytes(), filename=name)


def flat(text: str) -> str:
    """Whitespace-insensitive view: text files and PDFs wrap lines mid-sentence."""
    return " ".join(text.split())


def headings(doc: ParsedDocument) -> list[str | None]:
    return [section.heading for section in doc.sections]


def pdf_bytes(*, encrypt: bool = False) -> bytes:
    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    if encrypt:
        writer.encrypt("secret", algorithm="RC4-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in files.items():
            archive.writestr(name, content)
    return buffer.getvalue()


# --- the example corpus -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "mime", "title", "min_sections"),
    [
        ("warranty.md", "text/markdown", "Lumen Cycles Limited Warranty", 8),
        ("battery-care.html", "text/html", "Battery Care Guide | Lumen Cycles", 6),
        ("quickstart.txt", "text/plain", "quickstart", 1),
        ("service-manual.pdf", "application/pdf", "Lumen Cycles Service Manual", 4),
        ("returns-policy.docx", DOCX, "Lumen Cycles Returns Policy", 6),
        ("models.csv", "text/csv", "models", 1),
        ("faq.json", "application/json", "faq", 10),
    ],
)
def test_every_example_parses(name: str, mime: str, title: str, min_sections: int) -> None:
    data = (DOCS / name).read_bytes()
    assert detect_mime(data, filename=name) == mime
    doc = parse_document(data, filename=name)
    assert doc.meta["mime"] == mime
    assert doc.title == title
    assert len(doc.sections) >= min_sections
    assert all(section.text.strip() for section in doc.sections)


def test_labelled_questions_point_at_real_passages() -> None:
    questions: list[dict[str, Any]] = json.loads((EXAMPLES / "questions.json").read_text())
    assert len(questions) >= 12
    for item in questions:
        doc = parse_example(item["expected_file"])
        sections = doc.sections
        if "page" in item:
            sections = [s for s in sections if s.page == item["page"]]
            assert sections, item
        assert any(flat(item["expected_phrase"]) in flat(s.text) for s in sections), item


def test_markdown_heading_paths() -> None:
    doc = parse_example("warranty.md")
    root = "Lumen Cycles Limited Warranty"
    assert headings(doc)[:4] == [
        root,
        f"{root} > Coverage Periods",
        f"{root} > Coverage Periods > Frame and Fork",
        f"{root} > Coverage Periods > Motor and Electronics",
    ]
    # An h2 after h3s closes them.
    assert f"{root} > What Is Not Covered" in headings(doc)
    frame = doc.sections[2]
    assert frame.text.startswith("- Frame: 10 years")
    assert "Frame and Fork" not in frame.text


def test_html_drops_boilerplate_and_keeps_heading_paths() -> None:
    doc = parse_example("battery-care.html")
    everything = " ".join(section.text for section in doc.sections)
    assert "dataLayer" not in everything  # script
    assert "font-family" not in everything  # style
    assert "Shop" not in everything  # nav
    assert "Battery Care Guide > Charging > Partial charges are fine" in headings(doc)
    storage = next(s for s in doc.sections if s.heading == "Battery Care Guide > Storage")
    assert "between 10 °C and 20 °C" in storage.text


def test_pdf_sections_are_numbered_pages() -> None:
    doc = parse_example("service-manual.pdf")
    assert [section.page for section in doc.sections] == [1, 2, 3, 4]
    assert doc.meta["pages"] == 4
    assert "Stem faceplate bolts: 5 Nm" in doc.sections[2].text
    assert "E07 - Torque sensor signal lost" in flat(doc.sections[3].text)


def test_docx_headings_tables_and_title() -> None:
    doc = parse_example("returns-policy.docx")
    assert headings(doc)[0] is None  # intro paragraph before the first heading
    assert "Your Right to Return" in headings(doc)
    table = next(s for s in doc.sections if s.heading == "Refunds > Refund Amounts")
    assert "Ridden over 50 km | 90% of the price paid" in table.text
    assert all("Lumen Cycles Returns Policy" not in s.text for s in doc.sections)


def test_csv_rows_render_as_header_value_pairs() -> None:
    doc = parse_example("models.csv")
    lines = doc.sections[0].text.split("\n")
    assert len(lines) == 6
    trail = next(line for line in lines if line.startswith("Model: Trail X9;"))
    assert "Battery (Wh): 720" in trail
    assert doc.sections[0].heading == "rows 1-6"


def test_json_array_of_objects_gives_one_section_per_object() -> None:
    doc = parse_example("faq.json")
    assert headings(doc)[0] == "How fast does the motor assist?"
    assert "regions[0]: EU" in doc.sections[0].text
    cargo = doc.sections[2]
    assert "specs.max_total_load_kg: 200" in cargo.text


# --- format details -------------------------------------------------------------------------


def test_markdown_code_fences_are_not_headings() -> None:
    source = (
        "Intro text.\n\n# Guide\n\n## Install\n\nRun this:\n\n```bash\n# not a heading\n"
        "pip install parley\n```\n\nDone.\n\n## Use ##\n\nAsk away.\n"
    )
    doc = parse_document(source.encode(), filename="guide.md")
    assert doc.title == "Guide"
    assert headings(doc) == [None, "Guide > Install", "Guide > Use"]
    assert "# not a heading" in doc.sections[1].text


def test_markdown_without_h1_uses_filename_stem() -> None:
    doc = parse_document(b"## Only a subheading\n\nBody.", filename="notes/read-me.markdown")
    assert doc.title == "read-me"
    assert headings(doc) == ["Only a subheading"]


def test_html_title_falls_back_to_first_h1_and_survives_deep_nesting() -> None:
    nested = "<div>" * 500 + "deep text" + "</div>" * 500
    source = f"<html><body><h1>Tips</h1><p>One.</p>{nested}</body></html>"
    doc = parse_document(source.encode(), filename="tips.htm")
    assert doc.title == "Tips"
    assert "deep text" in doc.sections[0].text
    # Deeper than browsers nest (PARLEY_INGEST_LIMITS__MAX_HTML_DEPTH): refused, not crashed.
    nested = "<div>" * 3000 + "deep text" + "</div>" * 3000
    with pytest.raises(NestingTooDeep):
        parse_document(f"<body>{nested}</body>".encode(), filename="tips.htm")


def test_csv_groups_rows_and_sniffs_semicolons() -> None:
    rows = "\n".join(f"{i};Bike {i}" for i in range(45))
    doc = parse_document(f"id;name\n{rows}\n".encode(), filename="bikes.csv")
    assert headings(doc) == ["rows 1-20", "rows 21-40", "rows 41-45"]
    assert doc.sections[0].text.split("\n")[0] == "id: 0; name: Bike 0"


def test_json_object_flattens_to_paths() -> None:
    data = json.dumps({"title": "Specs", "a": {"b": [{"c": 1}, {"c": True}]}, "n": None})
    doc = parse_document(data.encode(), filename="specs.json")
    assert doc.title == "Specs"
    assert doc.sections[0].text.split("\n") == [
        "title: Specs",
        "a.b[0].c: 1",
        "a.b[1].c: true",
        "n: null",
    ]


def test_utf8_bom_is_accepted_and_stripped() -> None:
    doc = parse_document("\ufeffHello there.".encode(), filename="a.txt")
    assert doc.sections[0].text == "Hello there."


def test_windows_path_filename_gives_clean_title() -> None:
    doc = parse_document(b"Hello.", filename="C:\\Users\\ana\\My Notes.txt")
    assert doc.title == "My Notes"


# --- sniffing and declared types ------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (PNG, "photo.txt"),
        (zip_bytes({"a.txt": b"hi"}), "manual.pdf"),
        (b"just some text", "manual.pdf"),
        (b"text\x00with\x01binary\x00", "notes.md"),
        (zip_bytes({"a.txt": b"hi"}), "letter.docx"),
        (b"PK\x03\x04 not really a zip", "letter.docx"),
        (b"%PDF-1.7\n", "notes.txt"),
        # Any name is fine for text (tests/unit/test_text_sniffing.py); binary stays refused.
        (PNG, "photo.log"),
        (b"MZ\x90\x00\x03\x00\x00\x00", "program.exe"),
        (zip_bytes({"a.txt": b"hi"}), "archive.zip"),
        (b"\x00\x01\x02binary", "README"),
    ],
)
def test_mismatched_or_binary_types_are_rejected(data: bytes, filename: str) -> None:
    with pytest.raises(UnsupportedMediaType) as excinfo:
        parse_document(data, filename=filename)
    assert filename.rsplit("/", 1)[-1] in excinfo.value.detail


@pytest.mark.parametrize(
    ("declared", "filename", "data"),
    [
        ("image/png", "notes.txt", b"hello"),
        ("text/plain", "manual.pdf", pdf_bytes()),
        ("application/pdf", "notes.md", b"# hi"),
        (DOCX, "data.csv", b"a,b\n1,2\n"),
    ],
)
def test_contradicting_declared_type_is_rejected(declared: str, filename: str, data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType):
        detect_mime(data, filename=filename, declared_mime=declared)


@pytest.mark.parametrize(
    ("declared", "filename", "data", "expected"),
    [
        (None, "notes.md", b"# hi", "text/markdown"),
        ("", "notes.md", b"# hi", "text/markdown"),
        ("application/octet-stream", "manual.pdf", pdf_bytes(), "application/pdf"),
        ("text/plain", "notes.md", b"# hi", "text/markdown"),
        ("text/plain; charset=utf-8", "data.csv", b"a,b\n1,2\n", "text/csv"),
        ("text/plain", "data.json", b"{}", "application/json"),
        ("application/vnd.ms-excel", "data.csv", b"a,b\n1,2\n", "text/csv"),
        ("Application/PDF", "manual.pdf", pdf_bytes(), "application/pdf"),
        ("text/markdown", "upload", b"# hi", "text/markdown"),
        (None, "upload", pdf_bytes(), "application/pdf"),
    ],
)
def test_compatible_declared_types_are_accepted(
    declared: str | None, filename: str, data: bytes, expected: str
) -> None:
    assert detect_mime(data, filename=filename, declared_mime=declared) == expected


# --- broken input ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "filename", "reason"),
    [
        (b"%PDF-1.4\n1 0 obj garbage", "broken.pdf", "corrupt"),
        ((DOCS / "service-manual.pdf").read_bytes()[:2000], "truncated.pdf", "corrupt"),
        (pdf_bytes(encrypt=True), "locked.pdf", "encrypted"),
        (pdf_bytes(), "scan.pdf", "no extractable text"),
        (zip_bytes({"word/document.xml": b"<not xml"}), "bad.docx", "corrupt"),
        (b"", "empty.txt", "no extractable text"),
        (b"  \n\n\t", "blank.md", "no extractable text"),
        (b"{not json", "bad.json", "invalid JSON"),
        (b"a,b\n", "header-only.csv", "no data rows"),
        (b"[" * 100_000 + b"]" * 100_000, "deep.json", "JSON"),
    ],
)
def test_broken_input_raises_parse_error(data: bytes, filename: str, reason: str) -> None:
    with pytest.raises(ParseError) as excinfo:
        parse_document(data, filename=filename)
    assert reason in excinfo.value.detail
