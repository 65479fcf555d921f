"""``parley worker``: claim and run ingestion jobs from the database (scale-out shape)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from parley.cli.common import load_settings, report
from parley.errors import ParleyError
from parley.logging import configure_logging


def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Jobs run at once by this process (default: jobs.concurrency)."),
    ] = None,
) -> None:
    """Run ingestion jobs until SIGTERM/SIGINT; the job in progress goes back to the queue.

    Start any number of these next to API processes started with
    PARLEY_JOBS__RUN_IN_PROCESS=false; they share the work through the database.
    """
    from parley.jobs.worker import run_worker

    settings = load_settings()
    if concurrency is not None:
        settings.jobs.concurrency = concurrency
    configure_logging(level=settings.server.log_level, json=settings.server.log_json)
    try:
        asyncio.run(run_worker(settings))
    except ParleyError as exc:
        report(exc)
