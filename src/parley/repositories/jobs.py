"""Durable ingestion jobs: creation, claiming with a lease, item progress."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from parley.db.base import utcnow
from parley.db.models import JobItemRow, JobRow

TERMINAL = ("succeeded", "failed", "cancelled")


class JobRepository:
    """Queries on ingestion jobs and their items."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, job: JobRow, items: Sequence[JobItemRow]) -> JobRow:
        """Stage a job with its items."""
        self.session.add(job)
        self.session.add_all(items)
        await self.session.flush()
        return job

    async def get(self, job_id: str) -> JobRow | None:
        """One job by id."""
        return await self.session.get(JobRow, job_id)

    async def items(self, job_id: str) -> list[JobItemRow]:
        """A job's items (without loading their bytes), in upload order."""
        stmt = (
            select(JobItemRow)
            .where(JobItemRow.job_id == job_id)
            .order_by(JobItemRow.id)
            .execution_options(populate_existing=True)
        )
        return list((await self.session.scalars(stmt.options(defer(JobItemRow.content)))).all())

    async def claim(
        self, *, worker_id: str, lease_s: float, max_attempts: int, job_id: str | None = None
    ) -> JobRow | None:
        """Atomically take the oldest runnable job (queued, or running with an expired lease)."""
        now = utcnow()
        runnable = or_(
            JobRow.status == "queued",
            and_(JobRow.status == "running", JobRow.lease_expires_at < now),
        )
        pick = select(JobRow.id).where(runnable, JobRow.attempts < max_attempts)
        if job_id is not None:
            pick = pick.where(JobRow.id == job_id)
        pick = pick.order_by(JobRow.created_at).limit(1)
        if self.session.get_bind().dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        stmt = (
            update(JobRow)
            .where(JobRow.id == pick.scalar_subquery(), runnable)
            .values(
                status="running",
                worker_id=worker_id,
                attempts=JobRow.attempts + 1,
                lease_expires_at=now + timedelta(seconds=lease_s),
                started_at=func.coalesce(JobRow.started_at, now),
            )
            .returning(JobRow)
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(stmt)).one_or_none()

    async def fail_exhausted(self, *, max_attempts: int) -> int:
        """Mark jobs whose lease expired after their last allowed attempt as failed."""
        now = utcnow()
        stmt = (
            update(JobRow)
            .where(
                JobRow.status == "running",
                JobRow.lease_expires_at < now,
                JobRow.attempts >= max_attempts,
            )
            .values(status="failed", error="gave up after repeated interruptions", finished_at=now)
        )
        result = await self.session.execute(stmt)
        return int(result.rowcount)  # type: ignore[attr-defined]

    async def extend_lease(self, job_id: str, *, worker_id: str, lease_s: float) -> bool:
        """Heartbeat: push the lease forward if this worker still holds the job."""
        stmt = (
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.worker_id == worker_id, JobRow.status == "running")
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
        )
        return bool((await self.session.execute(stmt)).rowcount)  # type: ignore[attr-defined]

    async def release(self, job_id: str, *, worker_id: str, error: str | None = None) -> None:
        """Put a job this worker holds back in the queue (graceful stop or retry)."""
        stmt = (
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.worker_id == worker_id, JobRow.status == "running")
            .values(status="queued", worker_id=None, lease_expires_at=None, error=error)
        )
        await self.session.execute(stmt)

    async def next_pending_item(self, job_id: str) -> JobItemRow | None:
        """The next unprocessed item, with its bytes."""
        stmt = (
            select(JobItemRow)
            .where(JobItemRow.job_id == job_id, JobItemRow.status == "pending")
            .order_by(JobItemRow.id)
            .limit(1)
        )
        return await self.session.scalar(stmt)

    async def finish_item(
        self,
        item_id: int,
        *,
        status: str,
        error: str | None = None,
        document_id: str | None = None,
        chunk_count: int = 0,
    ) -> None:
        """Record an item's outcome, drop its bytes and advance the job's counters."""
        item = await self.session.get(JobItemRow, item_id)
        if item is None:
            return
        item.status, item.error, item.document_id = status, error, document_id
        item.chunk_count, item.content = chunk_count, None
        counters: dict[str, Any] = {
            "processed_items": JobRow.processed_items + 1,
            "chunks_created": JobRow.chunks_created + chunk_count,
        }
        if status == "failed":
            counters["failed_items"] = JobRow.failed_items + 1
        elif status == "skipped":
            counters["skipped_items"] = JobRow.skipped_items + 1
        await self.session.execute(update(JobRow).where(JobRow.id == item.job_id).values(counters))

    async def finish(self, job_id: str, *, status: str, error: str | None = None) -> None:
        """Move a job to a terminal state."""
        stmt = (
            update(JobRow)
            .where(JobRow.id == job_id)
            .values(status=status, error=error, finished_at=utcnow(), lease_expires_at=None)
        )
        await self.session.execute(stmt)

    async def has_runnable(self) -> bool:
        """Whether any job is waiting (cheap poll for idle workers)."""
        stmt = select(JobRow.id).where(JobRow.status.in_(("queued", "running"))).limit(1)
        return (await self.session.scalar(stmt)) is not None
