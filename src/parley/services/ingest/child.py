"""A parser process: ``python -m parley.services.ingest.child MEMORY_MB``.

It reads length-prefixed frames on stdin: first the pickled ``PrepareConfig`` from its
parent, then two frames per file, its pickled ``(filename, declared_mime)`` and its raw
bytes (not pickled: no copy of the upload is made to send it); an empty frame means exit.
It answers each file with a JSON frame on stdout: ``{"ok": …}``, or
``{"error": class, "detail": …}`` for a file that fails (its budget, a corrupt file, out of
memory), or ``{"crash": …}`` for a bug.
Its address space is capped (``RLIMIT_AS``) once its modules are loaded, so a hostile file
ends in a ``MemoryError`` here, or at worst in this process dying, never in the API's.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
import threading
import time
import traceback
from typing import IO, Any

from parley.errors import ParleyError, ParseMemoryExceeded
from parley.services.ingest.prepare import (
    PrepareConfig,
    PrepareRequest,
    dumps,
    encode_prepared,
    prepare_document,
)
from parley.services.parsing.budget import setting

HEADER = struct.Struct(">Q")
EXIT_OUT_OF_MEMORY = 3
_PARENT_CHECK_S = 1.0


def read_frame(stream: IO[bytes]) -> bytes | None:
    """The next frame's payload, or None at end of stream."""
    header = _read_exact(stream, HEADER.size)
    if header is None:
        return None
    return _read_exact(stream, HEADER.unpack(header)[0])


def _read_exact(stream: IO[bytes], size: int) -> bytes | None:
    chunks: list[bytes] = []
    left = size
    while left:
        chunk = stream.read(left)
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def send_request(stream: IO[bytes], request: PrepareRequest) -> None:
    """Send one file: its name and type, then its bytes as they are."""
    write_frame(stream, pickle.dumps((request.filename, request.declared_mime)))
    write_frame(stream, request.data)


def write_frame(stream: IO[bytes], payload: bytes) -> None:
    """Send one frame."""
    stream.write(HEADER.pack(len(payload)))
    stream.write(payload)
    stream.flush()


def main() -> None:
    """Serve requests until the parent closes stdin or sends an empty frame."""
    memory_mb = int(sys.argv[1])
    inbox = sys.stdin.buffer
    # Replies get their own copy of stdout; fd 1 then points at stderr, so a library that
    # prints cannot corrupt the frames.
    outbox = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    # Ctrl-C in a terminal reaches the whole process group: the parent decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    first = read_frame(inbox)
    if not first:
        return
    config: PrepareConfig = pickle.loads(first)  # trusted: our own parent's
    _warm(config)
    _limit_memory(memory_mb)
    write_frame(outbox, dumps({"ready": os.getpid()}))
    while head := read_frame(inbox):
        filename, declared_mime = pickle.loads(head)  # trusted: our own parent's
        request = PrepareRequest(read_frame(inbox) or b"", filename, declared_mime)
        write_frame(outbox, _handle(request, config, memory_mb))
        del request


def _exit_with_parent() -> None:
    """Exit as soon as the parent is gone (``kill -9``): a file half-parsed for a dead
    parent is wasted work, and an orphan would hold its memory until the file's end."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_CHECK_S)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _warm(config: PrepareConfig) -> None:
    """Load the tokenizer and the parsers' libraries before the memory cap applies."""
    config.counter.count_many(["warm up"])
    import charset_normalizer  # noqa: F401
    import lxml.etree  # noqa: F401
    import markdown_it  # noqa: F401
    import pypdf  # noqa: F401


def _limit_memory(memory_mb: int) -> None:
    try:
        import resource
    except ImportError:  # not on Windows: the wall-clock limit still applies
        return
    limit = memory_mb * 1024 * 1024
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ValueError, OSError):  # e.g. macOS refuses RLIMIT_AS: the deadline still applies
        print("parley parser: cannot cap its address space", file=sys.stderr)


def _handle(request: PrepareRequest, config: PrepareConfig, memory_mb: int) -> bytes:
    reply: dict[str, Any]
    try:
        prepared = prepare_document(request, config)
        del request
        reply = {"ok": encode_prepared(prepared), "rss": _rss_bytes()}
        del prepared
        return dumps(reply)
    except MemoryError:
        reply = {
            "error": ParseMemoryExceeded.__name__,
            "detail": f"parsing needed more than {memory_mb} MiB of memory "
            f"(limit {setting('parse_memory_mb')})",
            "retire": True,
        }
    except ParleyError as exc:
        reply = {"error": type(exc).__name__, "detail": exc.detail, "rss": _rss_bytes()}
    except Exception as exc:  # a parser library's own bug: reported, and this process retires
        reply = {"crash": type(exc).__name__, "traceback": traceback.format_exc(), "retire": True}
    try:
        return dumps(reply)
    except MemoryError:
        sys.exit(EXIT_OUT_OF_MEMORY)


def _rss_bytes() -> int:
    """Resident memory now (Linux), else the peak so far."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":
    main()
