"""How ingestion gets a file prepared: in parser processes (default) or inline (tests).

Either way the wait is watched: a deadline (``parse_timeout_s``) and an ``abort`` check,
polled a few times a second, that lets a cancelled job or a stopping worker give up on a
long parse within about a second instead of waiting for it to finish.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from parley.errors import ParseTimeout
from parley.services.ingest.prepare import (
    PrepareConfig,
    PreparedDocument,
    PrepareRequest,
    prepare_document,
)
from parley.services.parsing.budget import setting

T = TypeVar("T")
# Returns why to give up ("cancel", "stop", "lost"), or None to keep waiting.
AbortCheck = Callable[[], Awaitable[str | None]]

TICK_S = 0.2
_SETTLE_S = 5.0


class PrepareAborted(Exception):  # a control-flow signal, not an error
    """A file was abandoned (while prepared or embedded) because ``abort`` gave a ``reason``."""

    def __init__(self, reason: str) -> None:
        """Remember why."""
        super().__init__(reason)
        self.reason = reason


class DocumentPreparer(Protocol):
    """Turns a file into chunk drafts, away from the event loop."""

    async def prepare(
        self, request: PrepareRequest, *, abort: AbortCheck | None = None
    ) -> PreparedDocument:
        """Prepare one file; ``ParseError`` (or a ``LimitExceeded``) when it cannot be."""
        ...

    async def aclose(self) -> None:
        """Release processes or threads."""
        ...


def timeout_error(timeout_s: float) -> ParseTimeout:
    """The error of a file that was still being parsed at its deadline."""
    return ParseTimeout(
        f"parsing took longer than {timeout_s:g} s (limit {setting('parse_timeout_s')})"
    )


async def wait_watched(
    task: asyncio.Future[T],
    *,
    timeout_s: float,
    grace_s: float,
    abort: AbortCheck | None,
    stop: Callable[[], None],
) -> T:
    """The result of ``task``, unless ``timeout_s + grace_s`` pass or ``abort`` says to give up.

    Then ``stop()`` ends the work (kills the parser process, or flags the thread) and
    ``ParseTimeout`` or ``PrepareAborted`` is raised. Cancelling the caller stops it too.
    The grace lets the work's own check of ``timeout_s`` answer first, more cleanly.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s + grace_s
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=TICK_S)
            if done:
                return task.result()
            if loop.time() >= deadline:
                stop()
                await _settle(task)
                raise timeout_error(timeout_s)
            reason = await abort() if abort is not None else None
            if reason is not None:
                stop()
                await _settle(task)
                raise PrepareAborted(reason)
    except asyncio.CancelledError:
        stop()
        raise


async def _settle(task: asyncio.Future[T]) -> None:
    """Let stopped work wind down (its outcome no longer matters)."""
    await asyncio.wait({task}, timeout=_SETTLE_S)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved, so it is not reported as never retrieved


class InlinePreparer:
    """Prepares in a thread of this process: no memory ceiling, no hard kill (tests only)."""

    def __init__(self, config: PrepareConfig) -> None:
        """Prepare with ``config``."""
        self._config = config

    async def prepare(
        self, request: PrepareRequest, *, abort: AbortCheck | None = None
    ) -> PreparedDocument:
        """Prepare in a thread; the budget's own deadline and a cancel flag bound it."""
        cancel = threading.Event()
        task = asyncio.ensure_future(
            asyncio.to_thread(prepare_document, request, self._config, cancel=cancel)
        )
        timeout_s = self._config.limits.parse_timeout_s
        return await wait_watched(
            task, timeout_s=timeout_s, grace_s=1.0, abort=abort, stop=cancel.set
        )

    async def aclose(self) -> None:
        """Nothing to release."""


def build_preparer(config: PrepareConfig) -> DocumentPreparer:
    """The preparer ``config.limits.parse_isolation`` asks for; nothing starts until used."""
    if config.limits.parse_isolation == "inline":
        return InlinePreparer(config)
    from parley.services.ingest.process import ProcessPreparer

    return ProcessPreparer(config)
