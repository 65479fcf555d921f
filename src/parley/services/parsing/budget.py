"""The budget of one file: what parsing and chunking may consume, checked as they go.

Parsers and the chunker report what they produce (characters, sections, chunks, elements)
as they produce it, so a hostile file fails at the first item over its budget, with memory
and time bounded by the budget rather than by the file. ``tick`` also enforces a
cooperative deadline and, for in-process parsing, a cancellation flag; the process
isolation around parsing kills a parser that stops ticking (a C library stuck on one call).
"""

from __future__ import annotations

import threading
import time

from parley.errors import DocumentTooLarge, ParseTimeout, TooManyChunks
from parley.settings import IngestLimitSettings

_ENV = "PARLEY_INGEST_LIMITS__"


class ParseCancelled(Exception):  # a control-flow signal, not an error
    """Raised inside in-process parsing when its job asked it to stop."""


def setting(name: str) -> str:
    """The environment variable of an ingest limit, for error details."""
    return f"{_ENV}{name.upper()}"


class ParseBudget:
    """Counters and limits for one file; not thread-safe (one file, one thread)."""

    def __init__(
        self,
        limits: IngestLimitSettings | None = None,
        *,
        timeout_s: float | None = None,
        cancel: threading.Event | None = None,
    ) -> None:
        """Budget ``limits`` (defaults when omitted), optionally with a deadline and a flag."""
        self.limits = limits or IngestLimitSettings()
        self._timeout_s = timeout_s
        self._deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self._cancel = cancel
        self.chars = 0
        self.sections = 0
        self.chunks = 0

    def tick(self) -> None:
        """Raise ``ParseTimeout`` past the deadline, ``ParseCancelled`` once cancelled."""
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise ParseTimeout(
                f"parsing took longer than {self._timeout_s:g} s "
                f"(limit {setting('parse_timeout_s')})"
            )
        if self._cancel is not None and self._cancel.is_set():
            raise ParseCancelled

    def check_chars(self, total: int) -> None:
        """Refuse a document whose text would be ``total`` characters, before building it."""
        if total > self.limits.max_document_chars:
            raise DocumentTooLarge(
                f"the document has more than {self.limits.max_document_chars} characters of "
                f"text (limit {setting('max_document_chars')})"
            )

    def add_chars(self, count: int) -> None:
        """Account for ``count`` more characters of extracted text."""
        self.chars += count
        self.check_chars(self.chars)

    def add_section(self) -> None:
        """Account for one more section."""
        self.sections += 1
        if self.sections > self.limits.max_sections:
            raise TooManyChunks(
                f"the document has more than {self.limits.max_sections} sections "
                f"(limit {setting('max_sections')})"
            )
        self.tick()

    def add_chunk(self) -> None:
        """Account for one more chunk."""
        self.chunks += 1
        if self.chunks > self.limits.max_chunks:
            raise TooManyChunks(
                f"the document would make more than {self.limits.max_chunks} chunks "
                f"(limit {setting('max_chunks')})"
            )

    def too_large(self, what: str, limit: int, name: str) -> DocumentTooLarge:
        """The error for a count over its limit: ``too_large("pages", 2000, "max_pdf_pages")``."""
        return DocumentTooLarge(
            f"the document has more than {limit} {what} (limit {setting(name)})"
        )
