"""PostgreSQL specifics: pgvector's HNSW index and full-text search serve the hybrid query."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from parley.container import Container
from parley.domain.auth import SYSTEM
from parley.domain.retrieval import SearchQuery
from parley.providers.embeddings.fake import FakeEmbedder
from parley.providers.llm.fake import FakeLLM
from parley.providers.tokenizers.approx import ApproxTokenCounter
from parley.repositories.search_postgres import tsquery_text
from parley.services.ingestion import UploadedFile
from parley.settings import Settings
from tests.conftest import DOCS


@pytest.fixture
async def pg(settings: Settings, backend: str) -> Container:
    if backend != "postgres":
        pytest.skip("PostgreSQL-only behaviour")
    container = Container.build(
        settings, embedder=FakeEmbedder(64), llm=FakeLLM(), token_counter=ApproxTokenCounter()
    )
    await container.prepare_database()
    return container


async def test_hnsw_index_exists_and_is_used_for_dense_search(pg: Container) -> None:
    try:
        cid = (await pg.collections.create(actor=SYSTEM, name="kb")).row.id
        files = [UploadedFile(p.name, p.read_bytes()) for p in sorted(DOCS.iterdir())]
        job = await pg.ingestion.submit(actor=SYSTEM, collection_id=cid, files=files)
        assert await pg.runner.run_once(job_id=job.id) == "succeeded"
        async with pg.engine.connect() as conn:
            indexes = (
                (
                    await conn.execute(
                        text("SELECT indexname FROM pg_indexes WHERE tablename='chunks'")
                    )
                )
                .scalars()
                .all()
            )
            assert "ix_chunks_embedding_hnsw_64" in indexes and "ix_chunks_tsv" in indexes
            vector = "[" + ",".join(["0.125"] * 64) + "]"
            await conn.execute(text("SET enable_seqscan = off"))
            plan = "\n".join(
                (
                    await conn.execute(
                        text(
                            "EXPLAIN SELECT id FROM chunks WHERE collection_id = :c "
                            "AND vector_dims(embedding) = 64 "
                            "ORDER BY (embedding::vector(64)) <=> CAST(:v AS vector(64)) LIMIT 10"
                        ),
                        {"c": cid, "v": vector},
                    )
                ).scalars()
            )
        assert "ix_chunks_embedding_hnsw_64" in plan, plan
        hits = await pg.retrieval.search(
            SearchQuery(text="stem faceplate bolts torque", collection_ids=[cid], top_k=3)
        )
        assert hits[0].source == "service-manual.pdf" and hits[0].keyword_rank == 1
        assert all(h.dense_rank is not None or h.keyword_rank is not None for h in hits)
    finally:
        await pg.aclose()


async def test_tsvector_is_written_with_each_chunk(pg: Container) -> None:
    try:
        cid = (await pg.collections.create(actor=SYSTEM, name="kb")).row.id
        data = (DOCS / "faq.json").read_bytes()
        job = await pg.ingestion.submit(
            actor=SYSTEM, collection_id=cid, files=[UploadedFile("faq.json", data)]
        )
        await pg.runner.run_once(job_id=job.id)
        async with pg.engine.connect() as conn:
            missing = (
                await conn.execute(text("SELECT count(*) FROM chunks WHERE tsv IS NULL"))
            ).scalar_one()
            found = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM chunks WHERE tsv @@ to_tsquery('english', 'puddles')"
                    )
                )
            ).scalar_one()
        assert missing == 0 and found >= 1
    finally:
        await pg.aclose()


def test_tsquery_text_cannot_carry_syntax() -> None:
    assert tsquery_text("x & b | !c <-> d:*") == "x | b | c | d"
    assert tsquery_text("'; DROP TABLE chunks; --") == "drop | table | chunks"
    assert tsquery_text("!!!") is None
