"""Job control: retries with back-off, terminal failure, cancellation, API without a runner."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from parley.container import Container
from parley.db.base import utcnow
from parley.db.models import JobItemRow, JobRow
from parley.domain.auth import SYSTEM
from parley.errors import ProviderError
from parley.providers.embeddings.base import EmbedKind, Vectors
from parley.providers.embeddings.fake import FakeEmbedder
from parley.services.ingestion import ItemOutcome, UploadedFile
from parley.settings import Settings
from tests.conftest import DOCS, example_files


class SwitchableEmbedder(FakeEmbedder):
    """The fake embedder, made to fail on demand (an embedding service that is down)."""

    failing = False

    async def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        """Embed, or raise ``ProviderError`` while ``failing``."""
        if self.failing:
            raise ProviderError("embedding service is down")
        return await super().embed(texts, kind=kind)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """No in-process runner (as with ``PARLEY_JOBS__RUN_IN_PROCESS=false``): tests drive jobs."""
    settings.jobs.run_in_process = False
    settings.jobs.retry_backoff_s = 0.2
    settings.jobs.retry_backoff_max_s = 0.3
    settings.jobs.max_attempts = 3
    return settings


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    """Every container in this module embeds with the switchable fake."""
    return SwitchableEmbedder(dimension=64)


def uploads(*names: str) -> list[UploadedFile]:
    paths = [DOCS / n for n in names] if names else sorted(DOCS.iterdir())
    return [UploadedFile(p.name, p.read_bytes()) for p in paths]


def aware(value: datetime | None) -> datetime:
    """SQLite hands back naive datetimes (stored in UTC); PostgreSQL aware ones."""
    assert value is not None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


async def job_row(container: Container, job_id: str) -> JobRow:
    async with container.uow() as tx:
        row = await tx.jobs.get(job_id)
    assert row is not None
    return row


async def job_items(container: Container, job_id: str) -> list[JobItemRow]:
    async with container.uow() as tx:
        return await tx.jobs.items(job_id)


async def new_job(container: Container, *names: str) -> str:
    cid = (await container.collections.create(actor=SYSTEM, name="kb")).row.id
    job = await container.ingestion.submit(actor=SYSTEM, collection_id=cid, files=uploads(*names))
    return job.id


def test_backoff_doubles_and_is_capped(container: Container) -> None:
    runner = container.runner
    assert [runner.backoff_s(n) for n in (1, 2, 3)] == [0.2, 0.3, 0.3]
    container.settings.jobs.retry_backoff_max_s = 10.0
    assert [runner.backoff_s(n) for n in (1, 2, 3, 4)] == [0.2, 0.4, 0.8, 1.6]


async def test_crashed_attempts_retry_after_backoff_then_fail_terminally(
    container: Container, fake_embedder: SwitchableEmbedder
) -> None:
    fake_embedder.failing = True
    job_id = await new_job(container, "faq.json")

    before = utcnow()
    assert await container.runner.run_once(job_id=job_id) == "error"
    row = await job_row(container, job_id)
    assert row.status == "queued" and row.attempts == 1 and row.worker_id is None
    assert row.error is not None and "embedding service is down" in row.error
    not_before = aware(row.not_before)
    assert before + timedelta(seconds=0.2) <= not_before <= utcnow() + timedelta(seconds=0.2)
    # Not claimable before its back-off has passed, neither by id nor as "next job".
    assert await container.runner.run_once(job_id=job_id) is None
    assert await container.runner.run_once() is None
    assert (await job_row(container, job_id)).attempts == 1

    await asyncio.sleep((not_before - utcnow()).total_seconds() + 0.02)
    before = utcnow()
    assert await container.runner.run_once() == "error"
    row = await job_row(container, job_id)
    assert row.status == "queued" and row.attempts == 2
    not_before = aware(row.not_before)  # 0.2 * 2 = 0.4, capped at 0.3
    assert before + timedelta(seconds=0.3) <= not_before <= utcnow() + timedelta(seconds=0.3)

    await asyncio.sleep((not_before - utcnow()).total_seconds() + 0.02)
    assert await container.runner.run_once(job_id=job_id) == "error"
    row = await job_row(container, job_id)
    assert row.status == "failed" and row.attempts == 3 and row.finished_at is not None
    assert row.error == "ProviderError: embedding service is down"
    assert [i.status for i in await job_items(container, job_id)] == ["pending"]
    # Terminal: never claimed again, even once the embedder works.
    fake_embedder.failing = False
    await asyncio.sleep(0.35)
    assert await container.runner.run_once() is None
    assert (await job_row(container, job_id)).status == "failed"


async def test_a_retry_that_succeeds_clears_the_error(
    container: Container, fake_embedder: SwitchableEmbedder
) -> None:
    fake_embedder.failing = True
    job_id = await new_job(container, "faq.json", "warranty.md")
    assert await container.runner.run_once(job_id=job_id) == "error"
    fake_embedder.failing = False
    await asyncio.sleep(0.25)
    assert await container.runner.run_once(job_id=job_id) == "succeeded"
    row = await job_row(container, job_id)
    assert row.status == "succeeded" and row.error is None and row.attempts == 2
    assert row.processed_items == 2 and row.not_before is None


async def test_failed_job_shows_its_error_over_http(
    container: Container, client: httpx.AsyncClient, fake_embedder: SwitchableEmbedder
) -> None:
    container.settings.jobs.max_attempts = 1
    fake_embedder.failing = True
    job_id = await new_job(container, "faq.json")
    assert await container.runner.run_once(job_id=job_id) == "error"
    body = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert body["status"] == "failed" and body["attempts"] == 1
    assert body["error"] == "ProviderError: embedding service is down"
    again = await client.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409 and again.json()["code"] == "conflict"


async def test_lease_lost_on_the_last_attempt_fails_the_job(container: Container) -> None:
    job_id = await new_job(container, "faq.json")
    async with container.uow(write=True) as tx:
        row = await tx.jobs.get(job_id)
        assert row is not None
        row.status, row.worker_id, row.attempts = "running", "dead-worker", 3
        row.lease_expires_at = utcnow() - timedelta(seconds=1)
        await tx.commit()
    assert await container.runner.run_once() is None
    row = await job_row(container, job_id)
    assert row.status == "failed" and row.worker_id is None
    assert row.error is not None and row.error.startswith("gave up after 3 attempts")


async def test_api_without_in_process_runner_leaves_jobs_queued(
    container: Container, client: httpx.AsyncClient
) -> None:
    cid = (await client.post("/v1/collections", json={"name": "kb"})).json()["id"]
    upload = await client.post(f"/v1/collections/{cid}/documents", files=example_files("faq.json"))
    job_id = upload.json()["job_id"]
    await asyncio.sleep(0.3)  # six poll intervals of a runner, had one been started
    assert (await client.get(f"/v1/jobs/{job_id}")).json()["status"] == "queued"
    # A worker (here: this process's runner, driven by hand) picks it up.
    assert await container.runner.run_once() == "succeeded"
    assert (await client.get(f"/v1/jobs/{job_id}")).json()["status"] == "succeeded"


async def test_cancel_queued_job(container: Container, client: httpx.AsyncClient) -> None:
    cid = (await client.post("/v1/collections", json={"name": "kb"})).json()["id"]
    upload = await client.post(f"/v1/collections/{cid}/documents", files=example_files())
    job_id = upload.json()["job_id"]
    response = await client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "cancelled" and body["finished_at"] is not None
    assert body["progress"]["processed"] == 0
    assert {i["status"] for i in body["items"]} == {"cancelled"}
    assert (await client.get(f"/v1/jobs/{job_id}")).json()["status"] == "cancelled"
    # Never claimed again; its bytes are gone; a second cancel conflicts.
    assert await container.runner.run_once() is None
    async with container.uow() as tx:
        stmt = select(JobItemRow.content).where(JobItemRow.job_id == job_id)
        contents = list((await tx.session.scalars(stmt)).all())
    assert len(contents) == body["progress"]["total"] and set(contents) == {None}
    again = await client.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 409 and again.json()["code"] == "conflict"
    docs = (await client.get(f"/v1/collections/{cid}/documents")).json()["items"]
    assert docs == []


async def test_cancel_running_job_stops_between_files(
    container: Container, client: httpx.AsyncClient
) -> None:
    cid = (await client.post("/v1/collections", json={"name": "kb"})).json()["id"]
    upload = await client.post(f"/v1/collections/{cid}/documents", files=example_files())
    job_id = upload.json()["job_id"]
    total = upload.json()["files"]
    entered, release = asyncio.Event(), asyncio.Event()
    original = container.ingestion._process_item

    async def gated(collection_id: str, item: JobItemRow, **kw: Any) -> ItemOutcome:
        entered.set()
        await release.wait()
        return await original(collection_id, item, **kw)

    container.ingestion._process_item = gated  # type: ignore[method-assign]
    task = asyncio.create_task(container.runner.run_once(job_id=job_id))
    try:
        await asyncio.wait_for(entered.wait(), 10)
        response = await client.post(f"/v1/jobs/{job_id}/cancel")
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "running"  # stops before its next file
        release.set()
        assert await asyncio.wait_for(task, 10) == "cancelled"
    finally:
        release.set()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    body = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert body["status"] == "cancelled" and body["progress"]["processed"] == 1
    assert "files already stored stay stored" in body["error"]
    statuses = [i["status"] for i in body["items"]]
    assert statuses == ["succeeded"] + ["cancelled"] * (total - 1)
    # The file in flight when cancel arrived was stored, completely; nothing else was.
    docs = (await client.get(f"/v1/collections/{cid}/documents")).json()["items"]
    assert [d["source"] for d in docs] == [body["items"][0]["filename"]]
    assert docs[0]["chunk_count"] == body["items"][0]["chunks"] > 0
    assert (await client.get(f"/v1/collections/{cid}")).json()["chunks"] == docs[0]["chunk_count"]
    assert await container.runner.run_once() is None
    conflict = await client.post(f"/v1/jobs/{job_id}/cancel")
    assert conflict.status_code == 409 and conflict.json()["code"] == "conflict"


async def test_cancel_job_of_a_dead_worker_ends_on_next_claim(
    container: Container, client: httpx.AsyncClient
) -> None:
    job_id = await new_job(container, "faq.json", "warranty.md")
    async with container.uow(write=True) as tx:
        row = await tx.jobs.get(job_id)
        assert row is not None
        row.status, row.worker_id, row.attempts = "running", "dead-worker", 1
        row.lease_expires_at = utcnow() - timedelta(seconds=1)
        await tx.commit()
    response = await client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 200 and response.json()["status"] == "running"
    assert await container.runner.run_once() == "cancelled"
    body = (await client.get(f"/v1/jobs/{job_id}")).json()
    assert body["status"] == "cancelled" and body["progress"]["processed"] == 0


async def test_cancel_unknown_job_is_404(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/jobs/nope/cancel")
    assert response.status_code == 404 and response.json()["code"] == "not_found"


async def test_stop_lets_the_current_file_finish_then_requeues(container: Container) -> None:
    job_id = await new_job(container)
    entered, release = asyncio.Event(), asyncio.Event()
    original = container.ingestion._process_item

    async def gated(collection_id: str, item: JobItemRow, **kw: Any) -> ItemOutcome:
        entered.set()
        await release.wait()
        return await original(collection_id, item, **kw)

    container.ingestion._process_item = gated  # type: ignore[method-assign]
    container.runner.start()
    await asyncio.wait_for(entered.wait(), 10)
    stopping = asyncio.create_task(container.runner.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waits for the file in progress ...
    release.set()
    await asyncio.wait_for(stopping, 10)
    row = await job_row(container, job_id)  # ... stores it, then hands the job back
    assert row.status == "queued" and row.worker_id is None and row.attempts == 0
    assert row.processed_items == 1


async def test_stop_cancels_a_file_that_outlasts_the_grace_period(container: Container) -> None:
    job_id = await new_job(container)
    entered = asyncio.Event()

    async def stuck(collection_id: str, item: JobItemRow, **kw: Any) -> ItemOutcome:
        entered.set()
        await asyncio.sleep(60)
        raise AssertionError("not reached")

    container.ingestion._process_item = stuck  # type: ignore[method-assign]
    container.runner.start()
    await asyncio.wait_for(entered.wait(), 10)
    await asyncio.wait_for(container.runner.stop(grace_s=0.1), 10)
    row = await job_row(container, job_id)
    assert row.status == "queued" and row.worker_id is None and row.attempts == 0
    assert row.processed_items == 0
