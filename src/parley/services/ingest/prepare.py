"""Bytes → chunk drafts for one file, within its budget; and their wire form between processes.

This is what runs inside a parser process (or inline in tests). The result travels back to
the API or worker process as JSON, not pickle: a parser process handles hostile input, and
a compromised one must not be able to run code in its parent by what it sends back.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

from parley.domain.documents import ChunkDraft
from parley.errors import ParseError
from parley.providers.tokenizers.base import TokenCounter
from parley.services.chunking import chunk_document
from parley.services.parsing import ParseBudget, parse_document
from parley.settings import ChunkingSettings, IngestLimitSettings


@dataclass(frozen=True, slots=True)
class PrepareConfig:
    """What every preparation needs besides the file: counter, chunk sizes and budgets."""

    counter: TokenCounter
    chunking: ChunkingSettings
    limits: IngestLimitSettings


@dataclass(frozen=True, slots=True)
class PrepareRequest:
    """One file to prepare."""

    data: bytes
    filename: str
    declared_mime: str | None = None


@dataclass(frozen=True, slots=True)
class PreparedDocument:
    """A parsed and chunked file: its title, metadata and chunk drafts (sections dropped)."""

    title: str
    meta: dict[str, Any] = field(default_factory=dict)
    drafts: list[ChunkDraft] = field(default_factory=list)


def prepare_document(
    request: PrepareRequest, config: PrepareConfig, *, cancel: threading.Event | None = None
) -> PreparedDocument:
    """Parse and chunk one file; ``LimitExceeded`` (a ``ParseError``) as soon as it is over.

    The whole preparation shares one budget, including the cooperative deadline of
    ``parse_timeout_s``; ``cancel`` stops it at its next check (in-process runs only).
    """
    budget = ParseBudget(config.limits, timeout_s=config.limits.parse_timeout_s, cancel=cancel)
    parsed = parse_document(
        request.data,
        filename=request.filename,
        declared_mime=request.declared_mime,
        budget=budget,
    )
    drafts = chunk_document(
        parsed,
        counter=config.counter,
        max_tokens=config.chunking.max_tokens,
        overlap_tokens=config.chunking.overlap_tokens,
        budget=budget,
    )
    if not drafts:
        raise ParseError("the document has no extractable text")
    return PreparedDocument(title=parsed.title, meta=parsed.meta, drafts=drafts)


def encode_prepared(prepared: PreparedDocument) -> dict[str, Any]:
    """The JSON-able form of a result."""
    return {
        "title": prepared.title,
        "meta": prepared.meta,
        "drafts": [[d.position, d.text, d.token_count, d.heading, d.page] for d in prepared.drafts],
    }


def decode_prepared(message: dict[str, Any]) -> PreparedDocument:
    """A result back from its JSON form; a malformed one is a ``ParseError``."""
    try:
        drafts = [
            ChunkDraft(
                position=int(position),
                text=str(text),
                token_count=int(tokens),
                heading=None if heading is None else str(heading),
                page=None if page is None else int(page),
            )
            for position, text, tokens, heading, page in message["drafts"]
        ]
        meta = message["meta"]
        if not isinstance(meta, dict):
            raise TypeError("meta is not an object")
        return PreparedDocument(title=str(message["title"]), meta=meta, drafts=drafts)
    except (KeyError, TypeError, ValueError) as exc:
        raise ParseError(f"the parser process sent a malformed result: {exc}") from exc


def dumps(message: dict[str, Any]) -> bytes:
    """JSON bytes of a message (lone surrogates from broken text survive as escapes)."""
    return json.dumps(message, separators=(",", ":")).encode("ascii")
