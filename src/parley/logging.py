"""Structured logging (structlog → JSON lines), with the request id bound per request."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog


class _StderrHandler(logging.StreamHandler[Any]):
    """Writes to whatever ``sys.stderr`` is at emit time (it may be swapped, e.g. by tests)."""

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record to the current ``sys.stderr``."""
        self.stream = sys.stderr
        super().emit(record)


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    return structlog.PrintLogger(file=sys.stderr)


def configure_logging(*, level: str = "info", json: bool = True, cache: bool = True) -> None:
    """Route structlog and stdlib logging to stderr as JSON (or console) lines.

    ``cache`` binds loggers on first use (fastest); commands that may run with a swapped
    ``sys.stderr`` pass False.
    """
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=cache,
    )
    # Libraries that log through the stdlib (uvicorn, sqlalchemy) get the same format.
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # pypdf reports recoverable quirks of damaged files as warnings; the outcome is logged.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    # Access lines are replaced by our own request log (with request id and timings).
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
