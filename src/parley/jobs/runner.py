"""Claims ingestion jobs from the database and runs them, holding a lease with heartbeats.

The same runner serves the API process (embedded default, ``jobs.run_in_process``) and
``parley worker`` processes; any number of them may share one database.

* A crashed attempt goes back to the queue with an exponential back-off
  (``retry_backoff_s * 2**(attempt-1)``, capped by ``retry_backoff_max_s``); after
  ``max_attempts`` the job ends ``failed`` with the error.
* A worker that dies (``kill -9``) stops heart-beating; once its lease expires another runner
  claims the job (counting a new attempt) and resumes at the first unprocessed file. Each file
  is stored in its own transaction together with its item's outcome, so nothing is stored twice
  and nothing is lost.
* A graceful stop hands the running job back at once, without using up an attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from datetime import timedelta

import structlog

from parley.db.base import utcnow
from parley.db.models import JobRow
from parley.services.ingestion import IngestionService, ProgressCallback
from parley.services.uow import UnitOfWorkFactory
from parley.settings import JobSettings

log = structlog.get_logger(__name__)

STOP_GRACE_S = 10.0  # how long stop() lets a loop finish its current file


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
        self._stopping = False
        for n in range(self._settings.concurrency):
            self._tasks.append(asyncio.create_task(self._loop(), name=f"job-runner-{n}"))

    async def stop(self, *, grace_s: float = STOP_GRACE_S) -> None:
        """Stop the loops; a job in progress goes back to the queue, to resume at once elsewhere.

        A loop finishes the file it is on when that is quick, but abandons a long parse or
        embedding within a second or two (the file stays pending), then releases its job.
        Only past ``grace_s`` is it cancelled outright: cancelling a task in the middle of a
        database write can leave that connection's transaction holding SQLite's write lock.
        """
        self._stopping = True
        self._wake.set()  # idle loops leave their poll wait at once
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=grace_s)
            for task in late:
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
            status = await self._ingestion.run_job(
                job, worker_id=self.worker_id, progress=progress, should_stop=self._should_stop
            )
            if status == "interrupted":
                await self._release(job)
            return status
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

    def _should_stop(self) -> bool:
        return self._stopping

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                status = await self.run_once()
            except Exception:
                # E.g. the database is briefly unreachable: keep the loop alive and retry.
                log.exception("job_loop_error", worker=self.worker_id)
                status = None
            if status is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._settings.poll_interval_s)
                self._wake.clear()

    async def _heartbeat(self, job: JobRow) -> None:
        interval = self._settings.lease_s / 3
        while True:
            await asyncio.sleep(interval)
            try:
                async with self._uow(write=True) as tx:
                    held = await tx.jobs.extend_lease(
                        job.id, worker_id=self.worker_id, lease_s=self._settings.lease_s
                    )
                    await tx.commit()
            except Exception:  # a missed beat is retried; the lease outlasts several
                log.warning("job_heartbeat_failed", job_id=job.id, exc_info=True)
                continue
            if not held:
                return

    async def _release(self, job: JobRow) -> None:
        # Graceful shutdown: hand the job back now rather than after the lease expires, and
        # give the attempt back, since stopping a worker is not the job's fault.
        async with self._uow(write=True) as tx:
            await tx.jobs.release(job.id, worker_id=self.worker_id, refund_attempt=True)
            await tx.commit()
        log.info("job_released", job_id=job.id, worker=self.worker_id)

    def backoff_s(self, attempts: int) -> float:
        """Delay before retrying a job whose ``attempts``-th attempt crashed."""
        base = self._settings.retry_backoff_s * 2 ** max(attempts - 1, 0)
        return float(min(base, self._settings.retry_backoff_max_s))

    async def _give_back(self, job: JobRow, exc: Exception) -> None:
        error = f"{type(exc).__name__}: {exc}"
        async with self._uow(write=True) as tx:
            current = await tx.jobs.get(job.id)
            if current is None or current.worker_id != self.worker_id:
                return  # deleted, or another worker took it over after our lease lapsed
            if current.cancel_requested:
                await tx.jobs.finish(
                    job.id,
                    status="cancelled",
                    error=f"cancelled (last attempt failed with {error}); "
                    "files already stored stay stored",
                    worker_id=self.worker_id,
                )
                await tx.jobs.drop_pending_items(job.id)
                outcome, delay = "cancelled", None
            elif current.attempts >= self._settings.max_attempts:
                await tx.jobs.finish(job.id, status="failed", error=error, worker_id=self.worker_id)
                outcome, delay = "failed", None
            else:
                delay = self.backoff_s(current.attempts)
                await tx.jobs.release(
                    job.id,
                    worker_id=self.worker_id,
                    error=f"attempt {current.attempts} failed, retrying in {delay:g}s: {error}",
                    not_before=utcnow() + timedelta(seconds=delay),
                )
                outcome = "retry"
            await tx.commit()
        log.warning(
            "job_attempt_failed",
            job_id=job.id,
            attempt=current.attempts,
            outcome=outcome,
            retry_in_s=delay,
            error=error,
        )
