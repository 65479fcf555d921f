"""Deterministic cost of a chat turn: SQL statements counted, not timed."""

from __future__ import annotations

import asyncio

import httpx

from parley.container import Container
from parley.domain.auth import SYSTEM
from parley.services.ingestion import UploadedFile
from tests.conftest import DOCS, bearer, example_files, make_user


async def ingest_examples(container: Container, name: str = "kb") -> str:
    view = await container.collections.create(actor=SYSTEM, name=name)
    files = [UploadedFile(p.name, p.read_bytes()) for p in sorted(DOCS.iterdir())]
    job = await container.ingestion.submit(actor=SYSTEM, collection_id=view.row.id, files=files)
    assert await container.runner.run_once(job_id=job.id) == "succeeded"
    return view.row.id


def redis_round_trips(container: Container) -> int:
    return container.redis.guard.round_trips if container.redis is not None else 0


async def test_a_warm_chat_turn_costs_four_sql_statements(
    container: Container, backend: str
) -> None:
    """SQLite: 4 statements. PostgreSQL + Redis: 3 statements and 2 Redis round trips
    (history comes from Redis; the read and the write are one round trip each).

    The question and the answer are two inserts: the question is committed as generation
    starts (overlapping the model call), so a server killed mid-answer or a failing model
    loses no question; the answer follows it."""
    container.settings.retrieval.index_sync_interval_s = 3600  # steady state: no version check
    cid = await ingest_examples(container)
    session = await container.sessions.create(actor=SYSTEM, collection_ids=[cid])
    sid = session.row.id
    # The first turn warms the session scope cache and the vector index copy.
    await container.chat.complete(
        await container.chat.prepare(actor=SYSTEM, session_id=sid, content="warm up")
    )

    for question in ("What is the return window?", "How do I pair the app?"):
        container.statements.reset(record=True)
        trips = redis_round_trips(container)
        turn = await container.chat.prepare(actor=SYSTEM, session_id=sid, content=question)
        result = await container.chat.complete(turn)
        statements = container.statements.statements
        assert result.citations
        if backend == "postgres":
            assert redis_round_trips(container) - trips == 2
            assert container.statements.count == 3, statements
            assert "<=>" in statements[0] and "@@" in statements[0]
            assert all(s.startswith("INSERT INTO messages") for s in statements[1:])
            continue
        assert container.statements.count == 4, statements
        # 1: session + recent history, 2: hybrid search (SQLite: FTS5 + hydration of the
        # in-process dense hits; PostgreSQL: pgvector + tsvector), 3: insert the question,
        # 4: insert the answer.
        assert "FROM sessions" in statements[0] and "messages" in statements[0]
        assert "chunks_fts" in statements[1] or ("<=>" in statements[1] and "@@" in statements[1])
        assert all(s.startswith("INSERT INTO messages") for s in statements[2:])


async def test_streamed_turn_costs_the_same(container: Container, backend: str) -> None:
    container.settings.retrieval.index_sync_interval_s = 3600
    cid = await ingest_examples(container)
    sid = (await container.sessions.create(actor=SYSTEM, collection_ids=[cid])).row.id
    await container.chat.complete(
        await container.chat.prepare(actor=SYSTEM, session_id=sid, content="warm up")
    )
    container.statements.reset()
    turn = await container.chat.prepare(
        actor=SYSTEM, session_id=sid, content="battery storage temperature"
    )
    events = [event async for event, _ in container.chat.stream(turn)]
    assert events[-1] == "done"
    assert container.statements.count == (4 if backend == "sqlite" else 3)


async def test_a_failed_turn_costs_an_update_and_its_retry_a_lookup(
    container: Container, backend: str
) -> None:
    """A failed turn: its reads, the question's insert and one UPDATE marking it failed.
    Its retry: one lookup of the question, what reads are not cached, the answer's insert."""
    from parley.errors import ProviderError
    from parley.providers.llm.fake import FakeLLM

    container.settings.retrieval.index_sync_interval_s = 3600
    cid = await ingest_examples(container)
    sid = (await container.sessions.create(actor=SYSTEM, collection_ids=[cid])).row.id
    await container.chat.complete(
        await container.chat.prepare(actor=SYSTEM, session_id=sid, content="warm up")
    )
    llm = container.llm
    assert isinstance(llm, FakeLLM)
    container.statements.reset(record=True)
    turn = await container.chat.prepare(actor=SYSTEM, session_id=sid, content="Fold it?")
    llm.fail_with = ProviderError("upstream down", status=500)  # the answer fails
    try:
        await container.chat.complete(turn)
    except ProviderError as exc:
        question = exc.extra["message_id"]
    statements = container.statements.statements
    assert statements[-2].startswith("INSERT INTO messages")
    assert statements[-1].startswith("UPDATE messages")
    assert container.statements.count == (4 if backend == "sqlite" else 3), statements
    llm.fail_with = None
    container.statements.reset(record=True)
    retry = await container.chat.prepare_retry(actor=SYSTEM, session_id=sid, message_id=question)
    result = await container.chat.complete(retry)
    assert result.user_message_id == question
    statements = container.statements.statements
    assert "EXISTS" in statements[0] and statements[-1].startswith("INSERT INTO messages")
    # SQLite: lookup, history, answer (the failed turn left its search in the in-process
    # cache). PostgreSQL: lookup, search (only a stored turn writes the shared cache), answer.
    assert container.statements.count == 3, statements


async def test_repeated_query_is_served_from_the_search_cache(
    container: Container, backend: str
) -> None:
    container.settings.retrieval.index_sync_interval_s = 3600
    cid = await ingest_examples(container)
    sid = (await container.sessions.create(actor=SYSTEM, collection_ids=[cid])).row.id
    for _ in range(2):
        await container.chat.complete(
            await container.chat.prepare(actor=SYSTEM, session_id=sid, content="same question")
        )
    container.statements.reset()
    trips = redis_round_trips(container)
    await container.chat.complete(
        await container.chat.prepare(actor=SYSTEM, session_id=sid, content="same question")
    )
    if backend == "postgres":
        # history and search both come from Redis (one read); only the inserts are SQL
        assert container.statements.count == 2
        assert redis_round_trips(container) - trips == 2
    else:
        assert container.statements.count == 3  # history + 2 inserts; retrieval hit the cache


async def test_listing_collections_does_not_scale_with_page_size(container: Container) -> None:
    for i in range(12):
        await container.collections.create(actor=SYSTEM, name=f"c{i}")
    container.statements.reset()
    page = await container.collections.page(actor=SYSTEM, limit=50, cursor=None)
    assert len(page.items) == 12
    assert container.statements.count == 2  # page + grouped counts, no N+1
    container.statements.reset()
    await container.sessions.page(actor=SYSTEM, limit=50, cursor=None)
    assert container.statements.count <= 2


async def test_authenticated_http_turn_adds_no_round_trip(
    client: httpx.AsyncClient, container: Container, backend: str
) -> None:
    """Over HTTP with an API key, as a member: the key lookup, the session owner and the
    member's readable collections are cached, so a warm turn costs what the service-level
    turn costs (SQLite 4 statements; PostgreSQL 3 + 2 Redis round trips)."""
    container.settings.retrieval.index_sync_interval_s = 3600
    _, key = await make_user(container, "member@example.com")
    headers = bearer(key)
    cid = (await client.post("/v1/collections", json={"name": "kb"}, headers=headers)).json()["id"]
    upload = await client.post(
        f"/v1/collections/{cid}/documents", files=example_files("faq.json"), headers=headers
    )
    job = upload.json()["job_id"]
    for _ in range(200):
        if (await client.get(f"/v1/jobs/{job}", headers=headers)).json()["status"] == "succeeded":
            break
        await asyncio.sleep(0.05)
    await container.runner.stop()  # its queue polling would be counted too
    sid = (
        await client.post("/v1/sessions", json={"collection_ids": [cid]}, headers=headers)
    ).json()["id"]
    url = f"/v1/sessions/{sid}/messages"
    warm = await client.post(url, json={"content": "warm up"}, headers=headers)
    assert warm.status_code == 201, warm.text
    for question in ("Is the bike waterproof?", "Does it fold?"):
        container.statements.reset(record=True)
        trips = redis_round_trips(container)
        answer = await client.post(url, json={"content": question}, headers=headers)
        assert answer.status_code == 201, answer.text
        expected_sql = 3 if backend == "postgres" else 4
        assert container.statements.count == expected_sql, container.statements.statements
        if backend == "postgres":
            assert redis_round_trips(container) - trips == 2
