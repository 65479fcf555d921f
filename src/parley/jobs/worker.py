"""The ``parley worker`` process: job loops only, no web server.

It builds the same :class:`~parley.container.Container` as the API (one composition root),
applies migrations only when ``jobs.auto_migrate`` is set, and runs ``jobs.concurrency`` job
loops until SIGTERM or SIGINT. Stopping hands a running job straight back to the queue, so a
rolling restart loses nothing and does not wait for the lease to expire; a worker killed
outright (``kill -9``) is covered by the lease instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import structlog

from parley.container import Container
from parley.settings import Settings

log = structlog.get_logger(__name__)

_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


async def run_worker(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """Run job loops until ``stop`` is set or the process receives SIGTERM/SIGINT."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in _STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):  # e.g. Windows
            loop.add_signal_handler(sig, _on_signal, stop, sig)
            installed.append(sig)
    container = Container.build(settings)
    try:
        await container.prepare_database()
        container.runner.start()
        log.info(
            "worker_started",
            worker=container.runner.worker_id,
            concurrency=settings.jobs.concurrency,
            database=container.engine.url.render_as_string(hide_password=True),
        )
        await stop.wait()
    finally:
        # aclose() stops the loops first; JobRunner.stop releases the job in progress.
        await container.aclose()
        for sig in installed:
            loop.remove_signal_handler(sig)
    log.info("worker_stopped", worker=container.runner.worker_id)


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("worker_stopping", signal=sig.name)
    stop.set()
