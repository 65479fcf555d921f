"""Durable ingestion jobs: creation, claiming with a lease, retries, cancellation, progress."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from parley.db.base import utcnow
from parley.db.models import JobItemRow, JobRow
from parley.repositories.text import storable

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
        if not storable(job_id):
            return None
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
        """Atomically take the oldest runnable job and count the attempt.

        Runnable: queued and past its retry back-off (``not_before``), or running under a
        lease that expired (its worker died). On PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets
        any number of workers claim concurrently without waiting on each other.
        """
        now = utcnow()
        runnable = or_(
            and_(
                JobRow.status == "queued",
                or_(JobRow.not_before.is_(None), JobRow.not_before <= now),
            ),
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
                not_before=None,
                started_at=func.coalesce(JobRow.started_at, now),
            )
            .returning(JobRow)
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(stmt)).one_or_none()

    async def fail_exhausted(self, *, max_attempts: int) -> int:
        """End jobs that may not be attempted again.

        Those are jobs whose lease expired on their last allowed attempt (the worker died
        every time) and queued jobs already at the limit (e.g. ``max_attempts`` was lowered).
        A job whose cancellation was requested ends ``cancelled`` instead of ``failed``.
        """
        now = utcnow()
        gave_up = f"gave up after {max_attempts} attempts"
        stmt = (
            update(JobRow)
            .where(
                or_(
                    and_(JobRow.status == "running", JobRow.lease_expires_at < now),
                    JobRow.status == "queued",
                ),
                JobRow.attempts >= max_attempts,
            )
            .values(
                status=case((JobRow.cancel_requested, "cancelled"), else_="failed"),
                error=case(
                    (JobRow.cancel_requested, "cancelled; files already stored stay stored"),
                    (JobRow.status == "running", f"{gave_up}; the last one's worker stopped"),
                    else_=func.coalesce(JobRow.error, gave_up),
                ),
                worker_id=None,
                lease_expires_at=None,
                not_before=None,
                finished_at=now,
            )
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

    async def release(
        self,
        job_id: str,
        *,
        worker_id: str,
        error: str | None = None,
        not_before: datetime | None = None,
        refund_attempt: bool = False,
    ) -> bool:
        """Put a job this worker holds back in the queue; False if it no longer holds it.

        A retry passes ``not_before`` (the back-off) and the error; a graceful stop passes
        ``refund_attempt`` so that shutting a worker down does not use up the job's attempts.
        """
        values: dict[str, Any] = {
            "status": "queued",
            "worker_id": None,
            "lease_expires_at": None,
            "not_before": not_before,
        }
        if error is not None:
            values["error"] = error
        if refund_attempt:
            values["attempts"] = case((JobRow.attempts > 0, JobRow.attempts - 1), else_=0)
        stmt = (
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.worker_id == worker_id, JobRow.status == "running")
            .values(values)
        )
        return bool((await self.session.execute(stmt)).rowcount)  # type: ignore[attr-defined]

    async def cancel(self, job_id: str) -> str | None:
        """Cancel a job: ``"cancelled"`` if it was queued (ends now), ``"requested"`` if running.

        A running job is only flagged; its worker stops before its next file. None when the job
        is unknown or already finished. Each step is one conditional UPDATE, so a worker
        claiming the job at the same moment cannot slip between the check and the change.
        """
        if not storable(job_id):
            return None
        now = utcnow()
        queued = (
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.status == "queued")
            .values(
                status="cancelled",
                error="cancelled before it finished; files already stored stay stored",
                cancel_requested=True,
                not_before=None,
                finished_at=now,
            )
        )
        if (await self.session.execute(queued)).rowcount:  # type: ignore[attr-defined]
            await self.drop_pending_items(job_id)
            return "cancelled"
        running = (
            update(JobRow)
            .where(JobRow.id == job_id, JobRow.status == "running")
            .values(cancel_requested=True)
        )
        if (await self.session.execute(running)).rowcount:  # type: ignore[attr-defined]
            return "requested"
        return None

    async def drop_pending_items(self, job_id: str) -> None:
        """Mark a cancelled job's unprocessed items ``cancelled`` and free their bytes."""
        stmt = (
            update(JobItemRow)
            .where(JobItemRow.job_id == job_id, JobItemRow.status == "pending")
            .values(status="cancelled", content=None)
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
    ) -> bool:
        """Record an item's outcome, drop its bytes and advance the job's counters.

        Only a still-pending item is finished: False means another worker (which took the job
        over after this one's lease lapsed) already did, and the caller must roll back.
        """
        claimed = await self.session.execute(
            update(JobItemRow)
            .where(JobItemRow.id == item_id, JobItemRow.status == "pending")
            .values(
                status=status,
                error=error,
                document_id=document_id,
                chunk_count=chunk_count,
                content=None,
            )
            .returning(JobItemRow.job_id)
        )
        job_id = claimed.scalar_one_or_none()
        if job_id is None:
            return False
        counters: dict[str, Any] = {
            "processed_items": JobRow.processed_items + 1,
            "chunks_created": JobRow.chunks_created + chunk_count,
        }
        if status == "failed":
            counters["failed_items"] = JobRow.failed_items + 1
        elif status == "skipped":
            counters["skipped_items"] = JobRow.skipped_items + 1
        await self.session.execute(update(JobRow).where(JobRow.id == job_id).values(counters))
        return True

    async def finish(
        self, job_id: str, *, status: str, error: str | None = None, worker_id: str | None = None
    ) -> bool:
        """Move a job to a terminal state (only if ``worker_id`` still holds it, when given)."""
        stmt = update(JobRow).where(JobRow.id == job_id)
        if worker_id is not None:
            stmt = stmt.where(JobRow.worker_id == worker_id, JobRow.status == "running")
        stmt = stmt.values(status=status, error=error, finished_at=utcnow(), lease_expires_at=None)
        return bool((await self.session.execute(stmt)).rowcount)  # type: ignore[attr-defined]

    async def has_runnable(self) -> bool:
        """Whether any job is waiting (cheap poll for idle workers)."""
        stmt = select(JobRow.id).where(JobRow.status.in_(("queued", "running"))).limit(1)
        return (await self.session.scalar(stmt)) is not None
