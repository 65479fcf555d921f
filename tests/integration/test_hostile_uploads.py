"""Hostile uploads fail alone, with the code of the budget they broke, in real parser processes.

Every file is generated here, small: the limits are lowered to match (the defaults are
checked by the benchmark, ``bench/hostile_uploads.py``). Each case goes through the real
path: submit → runner → parser process → job item, on the embedded SQLite default.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import zipfile
from collections.abc import Sequence

import docx
import pytest
from fpdf import FPDF

from parley.container import Container
from parley.db.models import JobItemRow
from parley.domain.auth import SYSTEM
from parley.providers.embeddings.base import EmbedKind, Vectors
from parley.providers.embeddings.fake import FakeEmbedder
from parley.providers.llm.fake import FakeLLM
from parley.providers.tokenizers.approx import ApproxTokenCounter
from parley.services.ingestion import UploadedFile
from parley.settings import IngestLimitSettings, Settings
from tests.conftest import DOCS

_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


@pytest.fixture
def backend() -> str:
    """SQLite only: what is under test is the parser processes, not the storage."""
    return "sqlite"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Small budgets, so that small generated files break them; tests drive the runner."""
    settings.jobs.run_in_process = False
    settings.ingest_limits = IngestLimitSettings(
        parse_processes=1,
        max_document_chars=200_000,
        max_chunks=50,
        max_csv_rows=1_000,
        max_csv_fields=2_000,
        max_json_nodes=10_000,
        max_html_nodes=10_000,
        max_docx_paragraphs=2_000,
        max_docx_xml_bytes=1024 * 1024,
        max_pdf_pages=3,
    )
    return settings


def build(settings: Settings) -> Container:
    """A container for ``settings`` as a test changed them (the fixture's is built before)."""
    return Container.build(
        settings, embedder=FakeEmbedder(64), llm=FakeLLM(), token_counter=ApproxTokenCounter()
    )


def roomy(settings: Settings) -> Settings:
    """The fixture's settings with room for large (slow) text."""
    settings.ingest_limits.max_document_chars = 10**8
    settings.ingest_limits.max_chunks = 10**6
    return settings


def docx_bytes(paragraphs: int, *, padding: int = 0) -> bytes:
    """A valid .docx whose document.xml holds ``paragraphs`` (and ``padding`` empty marks)."""
    base = io.BytesIO()
    docx.Document().save(base)
    source = zipfile.ZipFile(io.BytesIO(base.getvalue()))
    body = b"<w:p><w:r><w:t>Hello there.</w:t></w:r></w:p>" * paragraphs
    body += b"<w:p>" + b'<w:proofErr w:type="spellStart"/>' * padding + b"</w:p>"
    xml = f'<w:document xmlns:w="{_W}"><w:body>'.encode() + body + b"</w:body></w:document>"
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            data = xml if info.filename == "word/document.xml" else source.read(info)
            archive.writestr(info.filename, data)
    return out.getvalue()


def pdf_bytes(pages: int) -> bytes:
    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for n in range(pages):
        pdf.add_page()
        pdf.cell(text=f"Page {n + 1} of the manual.")
    return bytes(pdf.output())


def slow_markdown(paragraphs: int) -> bytes:
    """Markdown that keeps markdown-it busy in one long call (no budget check inside it)."""
    para = "Some *markdown* text with `code` and [links](http://x). " * 20
    return ("# Title\n\n" + f"{para}\n\n" * paragraphs).encode()


def example(name: str) -> UploadedFile:
    return UploadedFile(name, (DOCS / name).read_bytes())


async def run_job(container: Container, files: list[UploadedFile]) -> dict[str, JobItemRow]:
    cid = (await container.collections.create(actor=SYSTEM, name=f"kb-{time.time_ns()}")).row.id
    job = await container.ingestion.submit(actor=SYSTEM, collection_id=cid, files=files)
    assert await container.runner.run_once(job_id=job.id) in ("succeeded", "failed")
    async with container.uow() as tx:
        return {item.filename: item for item in await tx.jobs.items(job.id)}


def assert_failed(item: JobItemRow, code: str, setting: str) -> None:
    """Failed, the reason led by ``code`` and naming the setting to raise."""
    assert item.status == "failed", (item.filename, item.status, item.error)
    assert item.error is not None and item.error.startswith(f"{code}: "), item.error
    assert f"PARLEY_INGEST_LIMITS__{setting}" in item.error, item.error


async def test_each_hostile_shape_fails_alone_with_its_code(container: Container) -> None:
    text = "The quick brown fox jumps over the lazy dog. "
    hostile = {
        "wide.csv": ("a,b\n" + ",x" * 5_000 + "\n", "csv_row_too_wide", "MAX_CSV_FIELDS"),
        "long.csv": (
            "id,name\n" + "".join(f"{i},n{i}\n" for i in range(1_500)),
            "document_too_large",
            "MAX_CSV_ROWS",
        ),
        "deep.html": ("<body>" + "<div><b>" * 3_000 + "x", "nesting_too_deep", "MAX_HTML_DEPTH"),
        "wide.html": ("<p>x</p>" * 20_000, "document_too_large", "MAX_HTML_NODES"),
        "values.json": (json.dumps([0] * 20_000), "document_too_large", "MAX_JSON_NODES"),
        "deep.json": ("[" * 500 + "]" * 500, "nesting_too_deep", "MAX_JSON_DEPTH"),
        "big.txt": (text * 5_000, "document_too_large", "MAX_DOCUMENT_CHARS"),
        "chunky.txt": (text * 1_500, "too_many_chunks", "MAX_CHUNKS"),
    }
    files = [UploadedFile(name, data.encode()) for name, (data, _, _) in hostile.items()]
    files += [
        UploadedFile("paragraphs.docx", docx_bytes(5_000)),
        UploadedFile("inflated.docx", docx_bytes(10, padding=60_000)),
        UploadedFile("pages.pdf", pdf_bytes(5)),
        # One line, no full stops: chunked on words, never tokenized whole.
        UploadedFile("oneline.txt", ("word " * 4_000).encode()),
        example("faq.json"),
        example("warranty.md"),
    ]
    items = await run_job(container, files)
    for name, (_, code, setting) in hostile.items():
        assert_failed(items[name], code, setting)
    assert_failed(items["paragraphs.docx"], "document_too_large", "MAX_DOCX_PARAGRAPHS")
    assert_failed(items["inflated.docx"], "document_too_large", "MAX_DOCX_XML_BYTES")
    assert_failed(items["pages.pdf"], "document_too_large", "MAX_PDF_PAGES")
    for name in ("oneline.txt", "faq.json", "warranty.md"):
        assert items[name].status == "succeeded", (name, items[name].error)
    assert items["oneline.txt"].chunk_count > 1


async def test_a_parse_past_its_deadline_fails_alone_and_the_next_job_works(
    settings: Settings,
) -> None:
    settings.ingest_limits.parse_timeout_s = 0.5
    container = build(roomy(settings))
    await container.prepare_database()
    try:
        started = time.monotonic()
        items = await run_job(container, [UploadedFile("slow.md", slow_markdown(2_000))])
        assert_failed(items["slow.md"], "parse_timeout", "PARSE_TIMEOUT_S")
        assert time.monotonic() - started < 10
        items = await run_job(container, [example("faq.json")])
        assert items["faq.json"].status == "succeeded"
    finally:
        await container.aclose()


async def test_a_parse_over_its_memory_ceiling_fails_alone_and_the_next_job_works(
    settings: Settings,
) -> None:
    settings.ingest_limits.parse_memory_mb = 256
    settings.ingest_limits.max_json_nodes = 10**8
    container = build(settings)
    await container.prepare_database()
    try:
        lists = ("[" + "[]," * 3_000_000 + "[]]").encode()  # 9 MB: ~3 M Python lists
        items = await run_job(container, [UploadedFile("lists.json", lists), example("faq.json")])
        assert_failed(items["lists.json"], "parse_memory_exceeded", "PARSE_MEMORY_MB")
        assert items["faq.json"].status == "succeeded"
        items = await run_job(container, [example("warranty.md")])
        assert items["warranty.md"].status == "succeeded"
    finally:
        await container.aclose()


async def test_cancelling_a_job_stops_the_file_being_parsed(settings: Settings) -> None:
    container = build(roomy(settings))
    await container.prepare_database()
    try:
        cid = (await container.collections.create(actor=SYSTEM, name="kb")).row.id
        slow = UploadedFile("slow.md", slow_markdown(4_000))  # ~8 s of parsing
        job = await container.ingestion.submit(
            actor=SYSTEM, collection_id=cid, files=[slow, example("faq.json")]
        )
        task = asyncio.create_task(container.runner.run_once(job_id=job.id))
        await asyncio.sleep(1.5)  # well into the parse
        cancelled_at = time.monotonic()
        await container.collections.cancel_job(job.id, actor=SYSTEM)
        assert await asyncio.wait_for(task, 10) == "cancelled"
        assert time.monotonic() - cancelled_at < 3
        async with container.uow() as tx:
            items = await tx.jobs.items(job.id)
        assert [item.status for item in items] == ["cancelled", "cancelled"]
        # The killed parser process is replaced on the next file.
        items_after = await run_job(container, [example("warranty.md")])
        assert items_after["warranty.md"].status == "succeeded"
    finally:
        await container.aclose()


async def test_stopping_the_runner_hands_back_the_job_being_parsed(settings: Settings) -> None:
    container = build(roomy(settings))
    await container.prepare_database()
    try:
        cid = (await container.collections.create(actor=SYSTEM, name="kb")).row.id
        slow = UploadedFile("slow.md", slow_markdown(4_000))  # ~8 s of parsing
        job = await container.ingestion.submit(actor=SYSTEM, collection_id=cid, files=[slow])
        container.runner.start()
        await asyncio.sleep(1.5)  # claimed, and well into the parse
        stopping = time.monotonic()
        await container.runner.stop()
        assert time.monotonic() - stopping < 3  # not the 8 s the parse would take
        async with container.uow() as tx:
            row = await tx.jobs.get(job.id)
            items = await tx.jobs.items(job.id)
        assert row is not None and row.status == "queued" and row.worker_id is None
        assert [item.status for item in items] == ["pending"]
    finally:
        await container.aclose()


class SlowEmbedder(FakeEmbedder):
    """An embedding model that takes a second per call (a CPU embedding a big file)."""

    def __init__(self, dimension: int) -> None:
        super().__init__(dimension)
        self.started = asyncio.Event()

    async def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        """Embed after a pause."""
        self.started.set()
        await asyncio.sleep(1.0)
        return await super().embed(texts, kind=kind)


async def test_cancelling_a_job_stops_the_file_being_embedded(settings: Settings) -> None:
    embedder = SlowEmbedder(64)
    container = Container.build(
        roomy(settings), embedder=embedder, llm=FakeLLM(), token_counter=ApproxTokenCounter()
    )
    await container.prepare_database()
    try:
        cid = (await container.collections.create(actor=SYSTEM, name="kb")).row.id
        big = UploadedFile("big.txt", ("Words of a long book go here. " * 60_000).encode())
        job = await container.ingestion.submit(actor=SYSTEM, collection_id=cid, files=[big])
        task = asyncio.create_task(container.runner.run_once(job_id=job.id))
        await asyncio.wait_for(embedder.started.wait(), 30)  # parsed; now embedding
        cancelled_at = time.monotonic()
        await container.collections.cancel_job(job.id, actor=SYSTEM)
        assert await asyncio.wait_for(task, 10) == "cancelled"
        assert time.monotonic() - cancelled_at < 3.5  # a few slices, not the whole file
        assert embedder.calls < 5
    finally:
        await container.aclose()
