"""Whether a job's current file should be abandoned: worker stopping, job cancelled or lost."""

from __future__ import annotations

import time
from collections.abc import Callable

from parley.services.uow import UnitOfWorkFactory

# How often a long parse re-reads its job row: cancellation takes effect within this delay.
POLL_S = 1.0


class JobWatch:
    """An ``AbortCheck`` for the files of one claimed job.

    The worker's own stop flag is checked on every call (it costs nothing); the job row at
    most every ``poll_s``, so a parse of minutes costs a read a second, not a read a tick.
    """

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        job_id: str,
        worker_id: str,
        should_stop: Callable[[], bool] | None,
        poll_s: float = POLL_S,
    ) -> None:
        """Watch ``job_id`` as held by ``worker_id``."""
        self._uow = uow
        self._job_id = job_id
        self._worker_id = worker_id
        self._should_stop = should_stop
        self._poll_s = poll_s
        self._checked = time.monotonic()

    async def __call__(self) -> str | None:
        """``"stop"``, ``"cancel"``, ``"lost"``, or None to go on."""
        if self._should_stop is not None and self._should_stop():
            return "stop"
        now = time.monotonic()
        if now - self._checked < self._poll_s:
            return None
        self._checked = now
        async with self._uow() as tx:
            current = await tx.jobs.get(self._job_id)
        if current is None or current.worker_id != self._worker_id or current.status != "running":
            return "lost"
        return "cancel" if current.cancel_requested else None
