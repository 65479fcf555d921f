"""Parser processes: each file is parsed and chunked in a child with a memory ceiling.

A small pool of ``parse_processes`` children (``python -m parley.services.ingest.child``),
started on first use and reused. Each child is owned by one file at a time, so a file past
its deadline, or whose job is cancelled, is stopped by killing *its* child alone; a child
that dies (out of memory, a crashing library) fails its file alone. Either way the next file
gets a fresh child. Children are replaced after ``parse_tasks_per_child`` files, after a
``MemoryError`` and once they hold more than ``_RECYCLE_RSS_BYTES``, so memory a big file
needed goes back to the OS; one idle for ``_IDLE_S`` is stopped.

Not ``ProcessPoolExecutor``: it cannot kill the one worker running a given task, and a
killed worker breaks every task of the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import structlog

from parley.errors import (
    CsvRowTooWide,
    DocumentTooLarge,
    LimitExceeded,
    NestingTooDeep,
    ParseError,
    ParseMemoryExceeded,
    ParseTimeout,
    TooManyChunks,
    UnsupportedMediaType,
)
from parley.services.ingest.child import (
    EXIT_OUT_OF_MEMORY,
    read_frame,
    send_request,
    write_frame,
)
from parley.services.ingest.prepare import (
    PrepareConfig,
    PreparedDocument,
    PrepareRequest,
    decode_prepared,
)
from parley.services.ingest.preparer import AbortCheck, PrepareAborted, wait_watched
from parley.services.parsing.budget import setting

log = structlog.get_logger(__name__)

_RECYCLE_RSS_BYTES = 256 * 1024 * 1024
# A child left idle this long is stopped: a server that ingested once does not keep paying
# for it (the next file starts a new one in about half a second).
_IDLE_S = 120.0
# Past its deadline the parent kills the child; the child's own, cooperative deadline
# normally answers first (and keeps the child alive).
_KILL_GRACE_S = 1.0
# How a child that died says it ran out of memory: its own exit code, or the signal of a
# native library that aborts on a failed allocation (Rust, C++) or of the kernel's OOM killer.
_OUT_OF_MEMORY_EXITS = {EXIT_OUT_OF_MEMORY, -signal.SIGABRT, -getattr(signal, "SIGKILL", 9)}
_ERRORS: dict[str, type[ParseError]] = {
    cls.__name__: cls
    for cls in (
        ParseError,
        LimitExceeded,
        DocumentTooLarge,
        TooManyChunks,
        CsvRowTooWide,
        NestingTooDeep,
        ParseTimeout,
        ParseMemoryExceeded,
    )
}


@dataclass(slots=True)
class _Reply:
    """A child's answer, decoded off the event loop: a result or the file's error."""

    prepared: PreparedDocument | None = None
    error: ParseError | None = None
    retire: bool = False
    rss: int = 0


class _Child:
    """One parser process and its two pipes; used by one file at a time."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process
        self.tasks = 0
        self.killed = False
        self.idle_timer: asyncio.TimerHandle | None = None

    def send(self, write: Callable[[IO[bytes]], None]) -> bytes | None:
        """Write to the child and wait for its answer (blocking: run in a thread).

        None when the child died (or was killed) before answering.
        """
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            write(self.process.stdin)
            return read_frame(self.process.stdout)
        except (OSError, ValueError):  # a broken pipe, or pipes closed by kill()
            return None

    def roundtrip(self, request: PrepareRequest) -> _Reply | None:
        """Prepare ``request`` in the child and decode its answer (blocking); None if it died.

        Sending megabytes and decoding megabytes of chunks take long enough to stall the
        event loop, so they happen here, in the waiting thread.
        """
        reply = self.send(lambda stream: send_request(stream, request))
        return None if reply is None else _decode(json.loads(reply))

    def kill(self) -> None:
        """Stop the process now (its file, if any, is abandoned)."""
        self.killed = True
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.kill()

    def reap(self) -> int:
        """Kill if needed, wait for the exit and close the pipes; the exit code."""
        if self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.kill()
        code = self.process.wait()
        for pipe in (self.process.stdin, self.process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        return code


class ProcessPreparer:
    """Prepares each file in a memory-capped parser process, killable on deadline or cancel."""

    def __init__(self, config: PrepareConfig) -> None:
        """Nothing starts here: the first ``prepare`` starts the first child."""
        self._config = config
        self._limits = config.limits
        self._idle: list[_Child] = []
        self._busy: set[_Child] = set()
        self._background: set[asyncio.Future[int]] = set()  # reaping of idle children
        self._slots = asyncio.Semaphore(self._limits.parse_processes)
        self._closed = False

    async def prepare(
        self, request: PrepareRequest, *, abort: AbortCheck | None = None
    ) -> PreparedDocument:
        """Prepare one file in a child; the file's own failures raise ``ParseError`` types."""
        async with self._slots:
            if self._closed:
                raise RuntimeError("the parser processes are shut down")
            child = self._idle.pop() if self._idle else await self._start()
            if child.idle_timer is not None:
                child.idle_timer.cancel()
            self._busy.add(child)
            reply: _Reply | None = None
            try:
                reply = await self._exchange(child, request, abort)
            finally:
                self._busy.discard(child)
                if reply is not None and self._reusable(child, reply):
                    self._idle.append(child)
                    loop = asyncio.get_running_loop()
                    child.idle_timer = loop.call_later(_IDLE_S, self._retire_idle, child)
                else:
                    await asyncio.to_thread(child.reap)
        if reply.error is not None:
            raise reply.error
        assert reply.prepared is not None
        return reply.prepared

    async def aclose(self) -> None:
        """Kill every child (a file in progress is abandoned: its job resumes elsewhere)."""
        self._closed = True
        children = [*self._idle, *self._busy]
        self._idle.clear()
        for child in children:
            if child.idle_timer is not None:
                child.idle_timer.cancel()
            child.kill()
        await asyncio.gather(
            *(asyncio.to_thread(child.reap) for child in children),
            *self._background,
            return_exceptions=True,
        )

    def _retire_idle(self, child: _Child) -> None:
        if child in self._idle:
            self._idle.remove(child)
            self._background.add(task := asyncio.ensure_future(asyncio.to_thread(child.reap)))
            task.add_done_callback(self._background.discard)

    async def _start(self) -> _Child:
        task = asyncio.ensure_future(asyncio.to_thread(self._spawn))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            # The thread goes on starting it: make sure that child does not outlive us.
            task.add_done_callback(_reap_started)
            raise

    def _spawn(self) -> _Child:
        """A new child, handed its configuration, once it says it is ready (blocking)."""
        here = str(Path(__file__).resolve().parents[3])  # the directory holding `parley`
        env = {
            **os.environ,
            # One thread per child: the pool is the parallelism, and fewer threads keep the
            # address space (what the memory ceiling counts) close to what is really used.
            "TOKENIZERS_PARALLELISM": "false",
            "MALLOC_ARENA_MAX": "2",
            # The child must import this same parley, even when it is not installed.
            "PYTHONPATH": os.pathsep.join(filter(None, [here, os.environ.get("PYTHONPATH")])),
        }
        memory_mb = str(self._limits.parse_memory_mb)
        process = subprocess.Popen(
            # -P: not the working directory on sys.path, whatever it holds.
            [sys.executable, "-P", "-m", "parley.services.ingest.child", memory_mb],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        child = _Child(process)
        config = pickle.dumps(self._config)
        if child.send(lambda stream: write_frame(stream, config)) is None:
            code = child.reap()
            raise ParseError(f"the parser process could not start (exit code {code})")
        log.info("parser_process_started", pid=process.pid)
        return child

    async def _exchange(
        self, child: _Child, request: PrepareRequest, abort: AbortCheck | None
    ) -> _Reply:
        task = asyncio.ensure_future(asyncio.to_thread(child.roundtrip, request))
        reply = await wait_watched(
            task,
            timeout_s=self._limits.parse_timeout_s,
            grace_s=_KILL_GRACE_S,
            abort=abort,
            stop=child.kill,
        )
        child.tasks += 1
        if reply is not None:
            return reply
        if child.killed:  # by aclose(), while this file was being parsed
            raise PrepareAborted("stop")
        code = await asyncio.to_thread(child.reap)
        return _Reply(error=_death(code, self._limits.parse_memory_mb), retire=True)

    def _reusable(self, child: _Child, reply: _Reply) -> bool:
        return (
            child.tasks < self._limits.parse_tasks_per_child
            and not reply.retire
            and reply.rss <= _RECYCLE_RSS_BYTES
        )


def _reap_started(task: asyncio.Future[_Child]) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result().reap()


def _decode(message: dict[str, Any]) -> _Reply:
    retire, rss = bool(message.get("retire")), int(message.get("rss", 0))
    if "ok" in message:
        return _Reply(prepared=decode_prepared(message["ok"]), rss=rss)
    if "error" in message:
        name, detail = str(message["error"]), str(message.get("detail", ""))
        error = (
            ParseError(f"could not be read: {detail}")
            if name == UnsupportedMediaType.__name__
            else _ERRORS.get(name, ParseError)(detail)
        )
        return _Reply(error=error, retire=retire, rss=rss)
    name = str(message.get("crash", "an unknown error"))
    log.error("document_parse_crashed", error=name, traceback=message.get("traceback"))
    return _Reply(error=ParseError(f"could not be read: {name}"), retire=True)


def _death(code: int, memory_mb: int) -> ParseError:
    """The error of a file whose parser process died under it."""
    if code in _OUT_OF_MEMORY_EXITS:
        return ParseMemoryExceeded(
            f"the parser process ran out of memory (exit code {code}; "
            f"limit {setting('parse_memory_mb')} = {memory_mb} MiB)"
        )
    return ParseError(f"could not be read: the parser process died (exit code {code})")
