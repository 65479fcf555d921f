"""Nothing is lost: restarts, interrupted jobs, other processes writing the same database."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, text

from parley.container import Container
from parley.db.base import utcnow
from parley.db.models import ChunkRow, JobRow
from parley.domain.auth import SYSTEM
from parley.domain.retrieval import SearchQuery
from parley.providers.embeddings.fake import FakeEmbedder
from parley.providers.llm.fake import FakeLLM
from parley.providers.tokenizers.approx import ApproxTokenCounter
from parley.services.ingestion import ItemOutcome, UploadedFile
from parley.settings import Settings
from tests.conftest import DOCS


def build(settings: Settings) -> Container:
    return Container.build(
        settings, embedder=FakeEmbedder(64), llm=FakeLLM(), token_counter=ApproxTokenCounter()
    )


def example_uploads(*names: str) -> list[UploadedFile]:
    paths = [DOCS / n for n in names] if names else sorted(DOCS.iterdir())
    return [UploadedFile(p.name, p.read_bytes()) for p in paths]


async def chunk_count(container: Container, collection_id: str) -> int:
    async with container.uow() as tx:
        stmt = (
            select(func.count())
            .select_from(ChunkRow)
            .where(ChunkRow.collection_id == collection_id)
        )
        return int((await tx.session.execute(stmt)).scalar_one())


async def test_restart_keeps_collections_sessions_messages_and_vectors(settings: Settings) -> None:
    first = build(settings)
    await first.prepare_database()
    cid = (await first.collections.create(actor=SYSTEM, name="kb")).row.id
    job = await first.ingestion.submit(actor=SYSTEM, collection_id=cid, files=example_uploads())
    await first.runner.run_once(job_id=job.id)
    sid = (await first.sessions.create(actor=SYSTEM, collection_ids=[cid])).row.id
    answer = await first.chat.complete(
        await first.chat.prepare(actor=SYSTEM, session_id=sid, content="What is the return window?")
    )
    query = SearchQuery(text="stem faceplate torque", collection_ids=[cid], top_k=5)
    before = [h.chunk_id for h in await first.retrieval.search(query)]
    await first.aclose()

    second = build(settings)
    await second.prepare_database()
    try:
        assert (await second.collections.get(cid, actor=SYSTEM)).documents == len(
            list(DOCS.iterdir())
        )
        messages = (await second.sessions.messages(sid, actor=SYSTEM, limit=10, cursor=None)).items
        assert [m.role for m in messages] == ["user", "assistant"]
        assert messages[1].content == answer.content and messages[1].sources
        assert second.index.version(cid) is None  # nothing in memory yet ...
        after = [h.chunk_id for h in await second.retrieval.search(query)]
        assert after == before  # ... rebuilt from the database, same results
        # the conversation continues with its history
        turn = await second.chat.prepare(
            actor=SYSTEM, session_id=sid, content="and for a ridden bike?"
        )
        assert len(turn.request.messages) >= 4
    finally:
        await second.aclose()


async def test_interrupted_job_resumes_without_duplicates(settings: Settings) -> None:
    settings.jobs.lease_s = 0.3
    crashing = build(settings)
    await crashing.prepare_database()
    cid = (await crashing.collections.create(actor=SYSTEM, name="kb")).row.id
    job = await crashing.ingestion.submit(actor=SYSTEM, collection_id=cid, files=example_uploads())

    class Crash(Exception):
        pass

    def crash_after_two(outcome: ItemOutcome, seen: list[str] = []) -> None:  # noqa: B006
        seen.append(outcome.filename)
        if len(seen) == 2:
            raise Crash

    # The crash surfaces as a failed attempt; the job goes back to the queue for a retry.
    assert await crashing.runner.run_once(job_id=job.id, progress=crash_after_two) == "error"
    async with crashing.uow() as tx:
        row = await tx.jobs.get(job.id)
        assert row is not None and row.processed_items == 2 and row.status == "queued"
        # Now simulate `kill -9` of the next worker: the job stays `running` under a lease
        # held by a process that will never heartbeat again.
        row.status, row.worker_id = "running", "dead-worker"
        row.lease_expires_at = utcnow() + timedelta(seconds=0.3)
        await tx.commit()
    await crashing.aclose()

    resumed = build(settings)
    await resumed.prepare_database()
    try:
        assert await resumed.runner.run_once(job_id=job.id) is None  # lease still held
        await asyncio.sleep(0.35)
        assert await resumed.runner.run_once(job_id=job.id) == "succeeded"
        async with resumed.uow() as tx:
            row = await tx.jobs.get(job.id)
            assert row is not None
            assert row.processed_items == row.total_items == len(list(DOCS.iterdir()))
            assert row.attempts == 2  # the crashed attempt, then the resumed one
            items = await tx.jobs.items(job.id)
        assert all(i.status == "succeeded" for i in items)
        expected = sum(i.chunk_count for i in items)
        assert await chunk_count(resumed, cid) == expected
        view = await resumed.collections.get(cid, actor=SYSTEM)
        assert view.documents == len(items) and view.chunks == expected
    finally:
        await resumed.aclose()


async def test_graceful_stop_requeues_the_running_job(settings: Settings) -> None:
    container = build(settings)
    await container.prepare_database()
    try:
        cid = (await container.collections.create(actor=SYSTEM, name="kb")).row.id
        job = await container.ingestion.submit(
            actor=SYSTEM, collection_id=cid, files=example_uploads()
        )
        gate = asyncio.Event()
        original = container.ingestion._process_item

        async def slow(collection_id: str, item: object, **kw: Any) -> ItemOutcome:
            gate.set()
            await asyncio.sleep(10)
            return await original(collection_id, item, **kw)  # type: ignore[arg-type]

        container.ingestion._process_item = slow  # type: ignore[method-assign]
        task = asyncio.create_task(container.runner.run_once(job_id=job.id))
        await gate.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        async with container.uow() as tx:
            row = await tx.session.get(JobRow, job.id)
            assert row is not None and row.status == "queued" and row.worker_id is None
    finally:
        await container.aclose()


async def test_writes_from_another_process_become_searchable(settings: Settings) -> None:
    server = build(settings)
    cli = build(settings)  # e.g. `parley ingest` while `parley serve` runs
    await server.prepare_database()
    try:
        cid = (await cli.collections.create(actor=SYSTEM, name="kb")).row.id
        q = SearchQuery(text="restocking fee ridden bike", collection_ids=[cid], top_k=3)
        assert await server.retrieval.search(q) == []
        job = await cli.ingestion.submit(
            actor=SYSTEM, collection_id=cid, files=example_uploads("returns-policy.docx")
        )
        await cli.runner.run_once(job_id=job.id)
        hits = await server.retrieval.search(q)
        assert hits and hits[0].source == "returns-policy.docx"
        doc_id = hits[0].document_id
        await cli.collections.delete_document(doc_id, actor=SYSTEM)
        assert await server.retrieval.search(q) == []
    finally:
        await cli.aclose()
        await server.aclose()


async def test_deleting_a_collection_empties_every_index(
    container: Container, backend: str
) -> None:
    cid = (await container.collections.create(actor=SYSTEM, name="kb")).row.id
    job = await container.ingestion.submit(
        actor=SYSTEM, collection_id=cid, files=example_uploads("faq.json")
    )
    await container.runner.run_once(job_id=job.id)
    assert await container.retrieval.search(
        SearchQuery(text="motor", collection_ids=[cid], top_k=3)
    )
    if backend == "sqlite":
        assert container.index.size(cid) > 0
    await container.collections.delete(cid, actor=SYSTEM)
    assert container.index.version(cid) is None
    # The keyword index is FTS5 on SQLite and a column of chunks on PostgreSQL.
    keyword = "SELECT count(*) FROM chunks_fts" if backend == "sqlite" else "SELECT 0"
    async with container.uow() as tx:
        fts = (await tx.session.execute(text(keyword))).scalar_one()
        chunks = (await tx.session.execute(text("SELECT count(*) FROM chunks"))).scalar_one()
        jobs = (await tx.session.execute(text("SELECT count(*) FROM ingestion_jobs"))).scalar_one()
    assert (fts, chunks, jobs) == (0, 0, 0)


async def test_large_collections_switch_to_hnsw_and_persist_it(
    settings: Settings, backend: str
) -> None:
    if backend != "sqlite":
        pytest.skip("the in-process index serves the embedded backend; PostgreSQL uses pgvector")
    settings.retrieval.hnsw_threshold = 20
    first = build(settings)
    await first.prepare_database()
    cid = (await first.collections.create(actor=SYSTEM, name="kb")).row.id
    job = await first.ingestion.submit(actor=SYSTEM, collection_id=cid, files=example_uploads())
    await first.runner.run_once(job_id=job.id)
    q = SearchQuery(text="brake pad thickness", collection_ids=[cid], top_k=3)
    hits = await first.retrieval.search(q)
    assert first.index.mode(cid) == "hnsw"  # type: ignore[attr-defined]
    await first.aclose()
    assert (Path(settings.data_dir) / "vectors" / f"{cid}.usearch").exists()

    second = build(settings)
    try:
        again = await second.retrieval.search(q)
        assert [h.chunk_id for h in again] == [h.chunk_id for h in hits]
        assert second.index.mode(cid) == "hnsw"  # type: ignore[attr-defined]
    finally:
        await second.aclose()
