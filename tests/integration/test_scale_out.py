"""Scale-out behaviour on PostgreSQL + Redis: instances that behave as one, Redis outages.

Each "instance" is a separately built container (own engine pool, Redis pool, in-process
caches) sharing only PostgreSQL and Redis — what two ``parley serve`` processes share.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Iterator

import pytest
from pydantic import SecretStr

from parley.container import Container
from parley.domain.auth import SYSTEM
from parley.domain.retrieval import SearchQuery
from parley.providers.embeddings.fake import FakeEmbedder
from parley.providers.llm.fake import FakeLLM
from parley.providers.tokenizers.approx import ApproxTokenCounter
from parley.services.ingestion import UploadedFile
from parley.settings import Settings
from tests.conftest import DOCS


@pytest.fixture
def scale_settings(settings: Settings, backend: str) -> Settings:
    if backend != "postgres":
        pytest.skip("scale-out runs on PostgreSQL + Redis")
    settings.llm.rewrite_followups = False  # keep prompts comparable across instances
    return settings


def instance(settings: Settings, llm: FakeLLM) -> Container:
    return Container.build(
        settings, embedder=FakeEmbedder(64), llm=llm, token_counter=ApproxTokenCounter()
    )


@pytest.fixture
async def pair(scale_settings: Settings) -> AsyncIterator[tuple[Container, Container]]:
    a, b = instance(scale_settings, FakeLLM()), instance(scale_settings, FakeLLM())
    await a.prepare_database()
    await b.prepare_database()
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()


async def ingest(container: Container, cid: str, *files: tuple[str, bytes]) -> None:
    uploads = [UploadedFile(name, data) for name, data in files]
    job = await container.ingestion.submit(actor=SYSTEM, collection_id=cid, files=uploads)
    assert await container.runner.run_once(job_id=job.id) == "succeeded"


async def test_a_session_started_on_one_instance_continues_on_the_other(
    pair: tuple[Container, Container],
) -> None:
    a, b = pair
    cid = (await a.collections.create(actor=SYSTEM, name="kb")).row.id
    await ingest(a, cid, ("faq.json", (DOCS / "faq.json").read_bytes()))
    sid = (await a.sessions.create(actor=SYSTEM, collection_ids=[cid])).row.id
    await a.chat.complete(
        await a.chat.prepare(actor=SYSTEM, session_id=sid, content="Is the bike waterproof?")
    )
    await a.chat.complete(
        await a.chat.prepare(actor=SYSTEM, session_id=sid, content="Does it fold?")
    )
    turn = await b.chat.prepare(actor=SYSTEM, session_id=sid, content="And the top speed?")
    history = [m.content for m in turn.request.messages[1:-1]]
    assert history[0] == "Is the bike waterproof?" and history[2] == "Does it fold?"
    assert len(history) == 4  # both earlier turns, user and assistant, in order
    await b.chat.complete(turn)
    again = await a.chat.prepare(actor=SYSTEM, session_id=sid, content="Thanks")
    assert [m.content for m in again.request.messages[1:-1]][-2] == "And the top speed?"


async def test_a_document_ingested_through_one_is_found_at_once_through_the_other(
    pair: tuple[Container, Container],
) -> None:
    a, b = pair
    cid = (await a.collections.create(actor=SYSTEM, name="kb")).row.id
    await ingest(a, cid, ("faq.json", (DOCS / "faq.json").read_bytes()))
    sid = (await b.sessions.create(actor=SYSTEM, collection_ids=[cid])).row.id
    question = "Which ferry leaves from pier seven?"
    first = await b.chat.complete(
        await b.chat.prepare(actor=SYSTEM, session_id=sid, content=question)
    )
    assert all(c.source != "ferries.md" for c in first.citations)
    # (A brand-new session's scope is unknown to Redis before its first turn is stored, so
    # caching starts with the second turn.)
    await b.chat.complete(await b.chat.prepare(actor=SYSTEM, session_id=sid, content=question))
    # The same question again is served from the shared search cache: SQL only stores the
    # question and its answer ...
    b.statements.reset()
    await b.chat.complete(await b.chat.prepare(actor=SYSTEM, session_id=sid, content=question))
    assert b.statements.count == 2
    # ... until a document lands through the other instance: the cache key changes with
    # the collection version, so the next turn sees the new document immediately.
    await ingest(a, cid, ("ferries.md", b"# Ferries\n\nThe night ferry leaves from pier seven."))
    after = await b.chat.complete(
        await b.chat.prepare(actor=SYSTEM, session_id=sid, content=question)
    )
    assert after.citations[0].source == "ferries.md"
    hits = await b.retrieval.search(SearchQuery(text=question, collection_ids=[cid], top_k=3))
    assert hits[0].source == "ferries.md"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def private_redis() -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    """A redis-server of our own that the test may stop and start again."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server binary not found")
    port = free_port()
    procs: list[subprocess.Popen[bytes]] = []
    yield port, procs
    for proc in procs:
        proc.kill()
        proc.wait(timeout=10)


def start_redis(port: int, procs: list[subprocess.Popen[bytes]]) -> None:
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    procs.append(proc)
    for _ in range(100):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        import time

        time.sleep(0.05)
    raise AssertionError("redis-server did not start")


async def test_turns_keep_working_while_redis_is_down_and_nothing_is_lost(
    scale_settings: Settings, private_redis: tuple[int, list[subprocess.Popen[bytes]]]
) -> None:
    port, procs = private_redis
    start_redis(port, procs)
    scale_settings.redis_url = SecretStr(f"redis://127.0.0.1:{port}/0")
    scale_settings.redis.retry_after_s = 0.5
    llm = FakeLLM()
    c = instance(scale_settings, llm)
    await c.prepare_database()
    try:
        cid = (await c.collections.create(actor=SYSTEM, name="kb")).row.id
        await ingest(c, cid, ("faq.json", (DOCS / "faq.json").read_bytes()))
        sid = (await c.sessions.create(actor=SYSTEM, collection_ids=[cid])).row.id
        asked: list[str] = []

        async def turn(text: str) -> float:
            started = asyncio.get_running_loop().time()
            await c.chat.complete(await c.chat.prepare(actor=SYSTEM, session_id=sid, content=text))
            asked.append(text)
            return asyncio.get_running_loop().time() - started

        await turn("before the outage 1")
        await turn("before the outage 2")
        procs[-1].kill()
        procs[-1].wait(timeout=10)
        durations = [await turn(f"during the outage {i}") for i in range(3)]
        assert max(durations) < 3.0  # bounded by the Redis timeouts, no retry storm
        readiness = await c.health.readiness()
        assert readiness.ready and readiness.components["redis"]["status"] == "degraded"
        start_redis(port, procs)  # an empty Redis: everything it held is gone
        await asyncio.sleep(0.6)
        await turn("after the outage 1")
        assert c.redis is not None and c.redis.guard.status() == "ok"
        last = await c.chat.prepare(actor=SYSTEM, session_id=sid, content="after the outage 2")
        # The history the model sees is complete and in order: refilled from the database.
        prompt_users = [m.content for m in last.request.messages if m.role == "user"][:-1]
        assert prompt_users == asked
        stored = (await c.sessions.messages(sid, actor=SYSTEM, limit=100, cursor=None)).items
        assert [m.content for m in stored if m.role == "user"] == asked
    finally:
        await c.aclose()
