"""``parley worker`` as real processes: kill -9 mid-job, graceful SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from parley.container import Container
from parley.db.models import ChunkRow, DocumentRow, JobRow
from parley.domain.auth import SYSTEM
from parley.providers.embeddings.fake import FakeEmbedder
from parley.providers.llm.fake import FakeLLM
from parley.providers.tokenizers.approx import ApproxTokenCounter
from parley.services.ingestion import UploadedFile
from parley.settings import Settings
from tests.conftest import DOCS

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

COPIES = 15
_TEXT_SUFFIXES = {".txt": "\n\nCopy {n} of this page.\n", ".md": "\n\nCopy {n} of this page.\n"}


def many_uploads(copies: int = COPIES) -> list[UploadedFile]:
    """Every example document ``copies`` times under distinct names, text files varied."""
    files = []
    for n in range(copies):
        for path in sorted(DOCS.iterdir()):
            data = path.read_bytes()
            suffix = _TEXT_SUFFIXES.get(path.suffix)
            if suffix is not None:
                data += suffix.format(n=n).encode()
            files.append(UploadedFile(f"{path.stem}-{n:02d}{path.suffix}", data))
    return files


def build(settings: Settings) -> Container:
    return Container.build(
        settings, embedder=FakeEmbedder(64), llm=FakeLLM(), token_counter=ApproxTokenCounter()
    )


def worker_env(settings: Settings) -> dict[str, str]:
    """The worker's configuration, from the environment only (as in production)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update(
        PARLEY_DATA_DIR=str(settings.data_dir),
        PARLEY_EMBEDDINGS__PROVIDER="fake",
        PARLEY_EMBEDDINGS__DIMENSION="64",
        PARLEY_CHUNKING__TOKENIZER="approx",
        PARLEY_CHUNKING__MAX_TOKENS=str(settings.chunking.max_tokens),
        PARLEY_CHUNKING__OVERLAP_TOKENS=str(settings.chunking.overlap_tokens),
        PARLEY_JOBS__LEASE_S="1.5",
        PARLEY_JOBS__POLL_INTERVAL_S="0.1",
        # The test migrated the database already; workers must not need to.
        PARLEY_JOBS__AUTO_MIGRATE="false",
        PARLEY_SERVER__LOG_LEVEL="info",
    )
    if settings.jwt_secret is not None:
        env["PARLEY_JWT_SECRET"] = settings.jwt_secret.get_secret_value()
    if settings.database_url:
        env["PARLEY_DATABASE_URL"] = settings.database_url
    return env


@contextmanager
def worker_process(settings: Settings, log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``python -m parley worker``, always killed on the way out."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "parley", "worker", *args],
            env=worker_env(settings),
            cwd=log.parent,  # no stray .env is read
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


async def job_row(container: Container, job_id: str) -> JobRow:
    async with container.uow() as tx:
        row = await tx.jobs.get(job_id)
    assert row is not None
    return row


async def wait_for_job(
    container: Container,
    job_id: str,
    done: Callable[[JobRow], bool],
    *,
    workers: Sequence[tuple[subprocess.Popen[bytes], Path]],
    timeout_s: float,
) -> JobRow:
    """Poll the job row until ``done``; fail with a worker's log on timeout or early exit."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        row = await job_row(container, job_id)
        if done(row):
            return row
        for proc, log in workers:
            if proc.poll() is not None:
                raise AssertionError(f"worker exited ({proc.returncode}):\n{tail(log)}")
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out; job {row.status} {row.processed_items}")
        await asyncio.sleep(0.02)


def tail(log: Path) -> str:
    """The end of a worker's log, for failure messages."""
    return log.read_text()[-4000:]


def log_events(log: Path) -> list[dict[str, Any]]:
    """The worker's JSON log lines."""
    events = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            events.append(json.loads(line))
    return events


async def test_worker_killed_mid_job_is_finished_by_another(
    settings: Settings, tmp_path: Path
) -> None:
    settings.limits.max_files_per_request = 1000
    container = build(settings)
    await container.prepare_database()
    try:
        cid = (await container.collections.create(actor=SYSTEM, name="kb")).row.id
        files = many_uploads()
        job_id = (await container.ingestion.submit(actor=SYSTEM, collection_id=cid, files=files)).id

        first_log = tmp_path / "worker-1.log"
        with worker_process(settings, first_log) as first:
            await wait_for_job(
                container,
                job_id,
                lambda r: r.processed_items >= 3,
                workers=[(first, first_log)],
                timeout_s=60,
            )
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        abandoned = await job_row(container, job_id)
        assert abandoned.status == "running" and abandoned.worker_id is not None
        assert 3 <= abandoned.processed_items < abandoned.total_items == len(files)

        second_log = tmp_path / "worker-2.log"
        with worker_process(settings, second_log) as second:
            row = await wait_for_job(
                container,
                job_id,
                lambda r: r.status not in ("queued", "running"),
                workers=[(second, second_log)],
                timeout_s=120,
            )
        assert row.status == "succeeded", row.error
        assert row.attempts == 2  # the killed attempt and the one that finished
        assert row.processed_items == row.total_items == len(files)
        assert row.failed_items == row.skipped_items == 0
        async with container.uow() as tx:
            items = await tx.jobs.items(job_id)
            docs = list(
                (
                    await tx.session.scalars(
                        select(DocumentRow).where(DocumentRow.collection_id == cid)
                    )
                ).all()
            )
            chunks = (
                await tx.session.execute(
                    select(func.count()).select_from(ChunkRow).where(ChunkRow.collection_id == cid)
                )
            ).scalar_one()
            duplicates = (
                await tx.session.execute(
                    select(ChunkRow.document_id, ChunkRow.position)
                    .where(ChunkRow.collection_id == cid)
                    .group_by(ChunkRow.document_id, ChunkRow.position)
                    .having(func.count() > 1)
                )
            ).all()
        assert all(i.status == "succeeded" for i in items)
        assert len(docs) == len(files) and {d.source for d in docs} == {f.filename for f in files}
        assert all(d.status == "ready" and d.chunk_count > 0 for d in docs)
        assert chunks == sum(d.chunk_count for d in docs) == sum(i.chunk_count for i in items)
        assert chunks == row.chunks_created
        assert duplicates == []
    finally:
        await container.aclose()


async def test_sigterm_stops_the_worker_and_requeues_its_job(
    settings: Settings, tmp_path: Path
) -> None:
    settings.limits.max_files_per_request = 1000
    container = build(settings)
    await container.prepare_database()
    try:
        cid = (await container.collections.create(actor=SYSTEM, name="kb")).row.id
        files = many_uploads()
        job_id = (await container.ingestion.submit(actor=SYSTEM, collection_id=cid, files=files)).id
        log = tmp_path / "worker.log"
        with worker_process(settings, log, "--concurrency", "2") as proc:
            await wait_for_job(
                container,
                job_id,
                lambda r: r.processed_items >= 1,
                workers=[(proc, log)],
                timeout_s=60,
            )
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0, tail(log)
        row = await job_row(container, job_id)
        assert row.status == "queued" and row.worker_id is None and row.lease_expires_at is None
        assert row.attempts == 0  # a graceful stop does not use up an attempt
        assert 1 <= row.processed_items < row.total_items
        events = log_events(log)
        started = next(e for e in events if e["event"] == "worker_started")
        assert started["concurrency"] == 2
        assert "job_released" in [e["event"] for e in events]
        assert events[-1]["event"] == "worker_stopped"
        # Another runner resumes it at once (no lease to wait for) and finishes it.
        assert await container.runner.run_once(job_id=job_id) == "succeeded"
        async with container.uow() as tx:
            items = await tx.jobs.items(job_id)
        assert all(i.status == "succeeded" for i in items)
        assert (await container.collections.get(cid, actor=SYSTEM)).documents == len(files)
    finally:
        await container.aclose()


async def test_concurrent_workers_share_jobs_without_double_claims(
    settings: Settings, tmp_path: Path
) -> None:
    container = build(settings)
    await container.prepare_database()
    try:
        cid = (await container.collections.create(actor=SYSTEM, name="kb")).row.id
        files = many_uploads(copies=8)
        batches = [files[i : i + 14] for i in range(0, len(files), 14)]
        job_ids = [
            (await container.ingestion.submit(actor=SYSTEM, collection_id=cid, files=batch)).id
            for batch in batches
        ]
        logs = [tmp_path / "worker-a.log", tmp_path / "worker-b.log"]
        with (
            worker_process(settings, logs[0], "--concurrency", "2") as a,
            worker_process(settings, logs[1], "--concurrency", "2") as b,
        ):
            for job_id in job_ids:
                row = await wait_for_job(
                    container,
                    job_id,
                    lambda r: r.status not in ("queued", "running"),
                    workers=[(a, logs[0]), (b, logs[1])],
                    timeout_s=120,
                )
                assert row.status == "succeeded" and row.attempts == 1, row.error
        claims = [
            e["job_id"] for log in logs for e in log_events(log) if e["event"] == "job_claimed"
        ]
        assert sorted(claims) == sorted(job_ids)  # each job claimed exactly once
        view = await container.collections.get(cid, actor=SYSTEM)
        assert view.documents == len(files)
        async with container.uow() as tx:
            stmt = select(func.sum(DocumentRow.chunk_count)).where(DocumentRow.collection_id == cid)
            assert view.chunks == (await tx.session.execute(stmt)).scalar_one()
    finally:
        await container.aclose()
