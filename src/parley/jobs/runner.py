"""Claims ingestion jobs from the database and runs them, holding a lease with heartbeats."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

import structlog

from parley.db.models import JobRow
from parley.services.ingestion import IngestionService, ProgressCallback
from parley.services.uow import UnitOfWorkFactory
from parley.settings import JobSettings

log = structlog.get_logger(__name__)


class JobRunner:
    """Runs queued jobs one after another; any number of runners may share a database."""

    def __init__(
        self, *, uow: UnitOfWorkFactory, ingestion: IngestionService, settings: JobSettings
    ) -> None:
        self._uow = uow
        self._ingestion = ingestion
        self._settings = settings
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{id(self):x}"
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False

    def wake(self) -> None:
        """Signal that a job was just queued (saves waiting for the next poll)."""
        self._wake.set()

    def start(self) -> None:
        """Start the background loops (``concurrency`` of them)."""
        for n in range(self._settings.concurrency):
            self._tasks.append(asyncio.create_task(self._loop(), name=f"job-runner-{n}"))

    async def stop(self) -> None:
        """Stop the loops; an interrupted job is released so it resumes at once next time."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()

    async def run_once(
        self, *, job_id: str | None = None, progress: ProgressCallback | None = None
    ) -> str | None:
        """Claim and run one job (a specific one if ``job_id``); None when nothing is runnable."""
        async with self._uow(write=True) as tx:
            await tx.jobs.fail_exhausted(max_attempts=self._settings.max_attempts)
            job = await tx.jobs.claim(
                worker_id=self.worker_id,
                lease_s=self._settings.lease_s,
                max_attempts=self._settings.max_attempts,
                job_id=job_id,
            )
            await tx.commit()
        if job is None:
            return None
        log.info("job_claimed", job_id=job.id, attempt=job.attempts, worker=self.worker_id)
        heartbeat = asyncio.create_task(self._heartbeat(job))
        try:
            return await self._ingestion.run_job(job, worker_id=self.worker_id, progress=progress)
        except asyncio.CancelledError:
            await asyncio.shield(self._release(job))
            raise
        except Exception as exc:
            log.exception("job_crashed", job_id=job.id)
            await self._give_back(job, exc)
            return "error"
        finally:
            # Wait for the heartbeat to end: a task left running could touch a connection
            # after the engine is disposed.
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat

    async def _loop(self) -> None:
        while not self._stopping:
            status = await self.run_once()
            if status is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.poll_interval_s)
                self._wake.clear()

    async def _heartbeat(self, job: JobRow) -> None:
        interval = self._settings.lease_s / 3
        while True:
            await asyncio.sleep(interval)
            async with self._uow(write=True) as tx:
                held = await tx.jobs.extend_lease(
                    job.id, worker_id=self.worker_id, lease_s=self._settings.lease_s
                )
                await tx.commit()
            if not held:
                return

    async def _release(self, job: JobRow) -> None:
        # Graceful shutdown: hand the job back now rather than after the lease expires.
        async with self._uow(write=True) as tx:
            await tx.jobs.release(job.id, worker_id=self.worker_id)
            await tx.commit()

    async def _give_back(self, job: JobRow, exc: Exception) -> None:
        async with self._uow(write=True) as tx:
            current = await tx.jobs.get(job.id)
            if current is None:
                return
            if current.attempts >= self._settings.max_attempts:
                await tx.jobs.finish(job.id, status="failed", error=f"{type(exc).__name__}: {exc}")
            else:
                await tx.jobs.release(
                    job.id,
                    worker_id=self.worker_id,
                    error=f"retrying after {type(exc).__name__}: {exc}",
                )
            await tx.commit()
