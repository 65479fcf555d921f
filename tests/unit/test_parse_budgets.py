"""Budgets of one file, enforced while parsing and chunking run (in-process, no I/O)."""

from __future__ import annotations

import asyncio
import io
import json
import pickle
import threading
import zipfile
from collections.abc import Sequence

import docx
import pytest
from pypdf import PdfWriter

from parley.domain.documents import ParsedDocument, Section
from parley.errors import (
    CsvRowTooWide,
    DocumentTooLarge,
    NestingTooDeep,
    ParseError,
    ParseTimeout,
    TooManyChunks,
)
from parley.providers.tokenizers.approx import ApproxTokenCounter
from parley.providers.tokenizers.hf import HFTokenCounter
from parley.services.chunking import chunk_document
from parley.services.ingest.prepare import (
    PrepareConfig,
    PreparedDocument,
    PrepareRequest,
    decode_prepared,
    encode_prepared,
    prepare_document,
)
from parley.services.ingest.preparer import InlinePreparer, PrepareAborted
from parley.services.parsing import ParseBudget, parse_document
from parley.services.parsing.budget import ParseCancelled
from parley.settings import ChunkingSettings, IngestLimitSettings

_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


def budget(**limits: int) -> ParseBudget:
    return ParseBudget(IngestLimitSettings(**limits))  # type: ignore[arg-type]


def parse(data: bytes | str, filename: str, **limits: int) -> ParsedDocument:
    raw = data.encode() if isinstance(data, str) else data
    return parse_document(raw, filename=filename, budget=budget(**limits))


def docx_with(paragraphs: int) -> bytes:
    base = io.BytesIO()
    docx.Document().save(base)
    source = zipfile.ZipFile(io.BytesIO(base.getvalue()))
    body = b"<w:p><w:r><w:t>Hello.</w:t></w:r></w:p>" * paragraphs
    xml = f'<w:document xmlns:w="{_W}"><w:body>'.encode() + body + b"</w:body></w:document>"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            data = xml if info.filename == "word/document.xml" else source.read(info)
            archive.writestr(info.filename, data)
    return out.getvalue()


def blank_pdf(pages: int) -> bytes:
    writer = PdfWriter()
    for _ in range(pages):
        writer.add_blank_page(100, 100)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# --- each format's own budget ---------------------------------------------------------------


def test_a_csv_row_too_wide_fails_before_the_csv_module_builds_it() -> None:
    # One line of 3 M fields: refused from its delimiter count, not after 3 M strings exist.
    with pytest.raises(CsvRowTooWide, match="MAX_CSV_FIELDS"):
        parse("a,b\n" + ',"a' * 3_000_000, "wide.csv")
    # Fields spread over quoted line breaks count too.
    with pytest.raises(CsvRowTooWide):
        parse("a,b\n" + '"x\n",' * 50, "wide.csv", max_csv_fields=20)
    assert parse("a,b\n1,2\n", "ok.csv", max_csv_fields=2).sections[0].text == "a: 1; b: 2"


def test_csv_rows_and_rendered_text_are_budgeted() -> None:
    rows = "".join(f"{i},x\n" for i in range(50))
    with pytest.raises(DocumentTooLarge, match="MAX_CSV_ROWS"):
        parse("id,v\n" + rows, "rows.csv", max_csv_rows=49)
    # A long header repeated on every row renders more text than the file holds.
    header = ",".join(f"{'column' * 20}{i}" for i in range(20))
    with pytest.raises(DocumentTooLarge, match="MAX_DOCUMENT_CHARS"):
        parse(header + "\n" + "1," * 19 + "1\n" * 1, "h.csv", max_document_chars=2_000)


def test_json_values_and_depth_are_counted_before_loading() -> None:
    with pytest.raises(DocumentTooLarge, match="MAX_JSON_NODES"):
        parse(json.dumps([[]] * 2_000), "values.json", max_json_nodes=1_000)
    with pytest.raises(NestingTooDeep, match="MAX_JSON_DEPTH"):
        parse("[" * 30 + "]" * 30, "deep.json", max_json_depth=20)
    # Brackets and commas inside strings are text, not structure.
    doc = parse(json.dumps({"a": "[[[[,,,,{{{{"}), "s.json", max_json_depth=2, max_json_nodes=3)
    assert doc.sections[0].text == "a: [[[[,,,,{{{{"


def test_html_depth_elements_and_text_are_budgeted() -> None:
    with pytest.raises(NestingTooDeep, match="MAX_HTML_DEPTH"):
        parse("<body>" + "<div><b>" * 100, "deep.html", max_html_depth=50)
    with pytest.raises(DocumentTooLarge, match="MAX_HTML_NODES"):
        parse("<p>x</p>" * 200, "wide.html", max_html_nodes=100)
    with pytest.raises(DocumentTooLarge, match="MAX_DOCUMENT_CHARS"):
        parse("<p>" + "word " * 1_000 + "</p>", "long.html", max_document_chars=1_000)
    # Script text is not extracted text: it costs nothing.
    doc = parse("<script>" + "x" * 5_000 + "</script><p>Hi</p>", "s.html", max_document_chars=10)
    assert doc.sections[0].text == "Hi"


def test_docx_paragraphs_and_inflated_size_are_budgeted() -> None:
    with pytest.raises(DocumentTooLarge, match="MAX_DOCX_PARAGRAPHS"):
        parse(docx_with(500), "many.docx", max_docx_paragraphs=100)
    with pytest.raises(DocumentTooLarge, match="MAX_DOCX_XML_BYTES"):
        parse(docx_with(500), "big.docx", max_docx_xml_bytes=10_000)
    assert parse(docx_with(3), "ok.docx").sections[0].text == "Hello.\n\nHello.\n\nHello."


def test_pdf_pages_are_counted_before_any_is_read() -> None:
    with pytest.raises(DocumentTooLarge, match="MAX_PDF_PAGES"):
        parse(blank_pdf(5), "pages.pdf", max_pdf_pages=4)
    with pytest.raises(ParseError, match="no extractable text"):
        parse(blank_pdf(4), "pages.pdf", max_pdf_pages=4)


def test_text_and_markdown_are_refused_whole_when_too_long() -> None:
    with pytest.raises(DocumentTooLarge, match="MAX_DOCUMENT_CHARS"):
        parse("a" * 101, "a.txt", max_document_chars=100)
    with pytest.raises(DocumentTooLarge):
        parse("# T\n\n" + "a" * 100, "a.md", max_document_chars=100)
    with pytest.raises(TooManyChunks, match="MAX_SECTIONS"):
        parse("".join(f"# H{i}\n\ntext\n\n" for i in range(20)), "a.md", max_sections=10)


def test_the_deadline_and_the_cancel_flag_stop_at_the_next_check() -> None:
    with pytest.raises(ParseTimeout, match="PARSE_TIMEOUT_S"):
        ParseBudget(timeout_s=0.0).tick()
    cancel = threading.Event()
    checked = ParseBudget(cancel=cancel)
    checked.tick()
    cancel.set()
    with pytest.raises(ParseCancelled):
        checked.tick()


# --- chunking -------------------------------------------------------------------------------


class SizeSpy:
    """Approximate counter that records the texts it is handed."""

    name = "size-spy"

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def count(self, text: str) -> int:
        return self.count_many([text])[0]

    def count_many(self, texts: Sequence[str]) -> list[int]:
        self.batches.append([len(t) for t in texts])
        counts: list[int] = ApproxTokenCounter().count_many(texts)
        return counts


def test_a_line_without_full_stops_is_never_counted_whole() -> None:
    spy = SizeSpy()
    line = "lorem ipsum dolor sit amet " * 20_000  # 540 KB, one "sentence"
    chunks = chunk_document(
        ParsedDocument("t", [Section(line)]),
        counter=spy,
        max_tokens=50,
        overlap_tokens=10,
        budget=budget(tokenize_batch_chars=64 * 1024, max_chunks=10**6),
    )
    assert chunks and all(c.token_count <= 50 for c in chunks)
    assert max(max(sizes) for sizes in spy.batches) <= 50 * 32  # no giant string
    assert max(sum(sizes) for sizes in spy.batches) <= 64 * 1024 + 50 * 32  # bounded batches


def test_chunks_over_budget_fail_as_soon_as_they_are_made() -> None:
    text = "A short sentence here. " * 500
    with pytest.raises(TooManyChunks, match="MAX_CHUNKS"):
        chunk_document(
            ParsedDocument("t", [Section(text)]),
            counter=ApproxTokenCounter(),
            max_tokens=20,
            overlap_tokens=0,
            budget=budget(max_chunks=10),
        )


def test_the_local_tokenizer_counts_long_texts_in_pieces_exactly() -> None:
    counter = HFTokenCounter()
    words = [f"tokenisation{i % 97}" for i in range(30_000)]  # ~450 KB
    text = " ".join(words)
    assert counter.count(text) == sum(counter.count_many(words))
    clone = pickle.loads(pickle.dumps(counter))  # sent to parser processes as its path
    assert clone.count("hello world") == counter.count("hello world")


# --- preparation ----------------------------------------------------------------------------


def config(**limits: object) -> PrepareConfig:
    return PrepareConfig(
        counter=ApproxTokenCounter(),
        chunking=ChunkingSettings(max_tokens=50, overlap_tokens=10),
        limits=IngestLimitSettings(**limits),  # type: ignore[arg-type]
    )


def test_prepared_documents_travel_as_json() -> None:
    request = PrepareRequest(b"# Guide\n\nHello there. Fine.\n", "g.md")
    prepared = prepare_document(request, config())
    wire = json.loads(json.dumps(encode_prepared(prepared)))
    assert decode_prepared(wire) == prepared
    with pytest.raises(ParseError, match="malformed"):
        decode_prepared({"title": "t", "meta": {}, "drafts": [["x"]]})
    assert isinstance(prepared, PreparedDocument) and prepared.title == "Guide"


async def test_inline_preparation_can_be_abandoned() -> None:
    preparer = InlinePreparer(config(max_document_chars=10**8, max_chunks=10**7))
    slow = PrepareRequest(b"word " * 600_000, "slow.txt")

    async def cancel() -> str | None:
        return "cancel"

    with pytest.raises(PrepareAborted) as aborted:
        await asyncio.wait_for(preparer.prepare(slow, abort=cancel), 10)
    assert aborted.value.reason == "cancel"
    quick = InlinePreparer(config(parse_timeout_s=0.05, max_document_chars=10**8))
    with pytest.raises(ParseTimeout):
        await quick.prepare(slow)
