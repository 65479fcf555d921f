"""Markdown parsed by markdown-it-py: setext and ATX headings, code, tables, front matter."""

from __future__ import annotations

from parley.domain.documents import ParsedDocument
from parley.providers.tokenizers.approx import ApproxTokenCounter
from parley.services.chunking import chunk_document
from parley.services.parsing import parse_document


def parse(source: str, filename: str = "doc.md") -> ParsedDocument:
    return parse_document(source.encode(), filename=filename)


def headings(doc: ParsedDocument) -> list[str | None]:
    return [section.heading for section in doc.sections]


def test_setext_h1_is_the_title_and_opens_a_section() -> None:
    doc = parse("Bike Manual\n===========\n\nRead this first.\n")
    assert doc.title == "Bike Manual"
    assert headings(doc) == ["Bike Manual"]
    assert doc.sections[0].text == "Read this first."


def test_setext_h2_nests_under_the_h1() -> None:
    doc = parse(
        "Bike Manual\n===========\n\nIntro.\n\nBrakes\n------\n\nBleed yearly.\n\n"
        "### Pads\n\nReplace at 1 mm.\n\nTyres\n-----\n\nCheck pressure.\n"
    )
    assert headings(doc) == [
        "Bike Manual",
        "Bike Manual > Brakes",
        "Bike Manual > Brakes > Pads",
        "Bike Manual > Tyres",
    ]
    assert all("---" not in s.text and "===" not in s.text for s in doc.sections)


def test_atx_headings_with_closing_hashes_and_inline_markup() -> None:
    doc = parse("# Guide #\n\nHi.\n\n## Install `parley` *now* ##\n\nRun it.\n")
    assert doc.title == "Guide"
    assert headings(doc) == ["Guide", "Guide > Install parley now"]


def test_code_block_with_hash_lines_stays_whole_in_its_section() -> None:
    code = "```bash\n# not a heading\npip install parley\n\n# still code\n```"
    indented = "    # indented code, not a heading\n    parley serve"
    doc = parse(f"# Guide\n\n## Install\n\nRun:\n\n{code}\n\n{indented}\n\n## Use\n\nAsk.\n")
    assert headings(doc) == ["Guide > Install", "Guide > Use"]
    install = doc.sections[0].text
    assert code in install
    assert indented.strip() in install
    # Chunks stay inside the section, so the block is never split by a heading boundary.
    chunks = chunk_document(doc, counter=ApproxTokenCounter(), max_tokens=200, overlap_tokens=0)
    assert [c.heading for c in chunks] == ["Guide > Install", "Guide > Use"]
    assert code in chunks[0].text


def test_table_becomes_readable_rows() -> None:
    source = (
        "## Torque\n\n| Part | Torque (Nm) |\n|:-----|------------:|\n"
        "| Stem faceplate | 5 |\n| `Seat clamp` | **6** |\n\nAfter the table.\n"
    )
    doc = parse(source)
    assert doc.sections[0].text == (
        "Part | Torque (Nm)\nStem faceplate | 5\nSeat clamp | 6\n\nAfter the table."
    )


def test_text_before_the_first_heading_is_its_own_section() -> None:
    doc = parse("Some front text.\n\nMore of it.\n\n# Title\n\nBody.\n")
    assert headings(doc) == [None, "Title"]
    assert doc.sections[0].text == "Some front text.\n\nMore of it."
    assert doc.title == "Title"


def test_lists_and_quotes_are_kept_and_quoted_hashes_do_not_split() -> None:
    doc = parse("# A\n\n- one\n- two\n  continued\n\n> # quoted\n> text\n\n1. first\n")
    assert headings(doc) == ["A"]
    text = doc.sections[0].text
    assert "- one\n- two\n  continued" in text
    assert "> # quoted" in text
    assert "1. first" in text


def test_front_matter_gives_the_title_and_is_not_a_heading() -> None:
    doc = parse('---\ntitle: "Warranty"\ntags: [a, b]\n---\nIntro.\n\n## Terms\n\nTwo years.\n')
    assert doc.title == "Warranty"
    assert headings(doc) == [None, "Terms"]
    assert "tags" not in doc.sections[0].text


def test_thematic_breaks_and_html_comments_are_dropped() -> None:
    doc = parse("# T\n\nAbove.\n\n---\n\n<!-- TOC -->\n\nBelow.\n")
    assert doc.sections[0].text == "Above.\n\nBelow."


def test_no_h1_falls_back_to_the_filename() -> None:
    doc = parse("Sub\n---\n\nBody.\n", filename="notes/read-me.md")
    assert doc.title == "read-me"
    assert headings(doc) == ["Sub"]
