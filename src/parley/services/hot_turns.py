"""Chat's use of the shared hot state (Redis): one read and one write per turn.

A turn reads the session's scope and recent history, the cached query embedding and the cached
search (whose key includes every collection's version, so any write to a collection makes it
unreachable on every instance) in ONE round trip, and writes the new messages plus whatever it
computed in ONE round trip after the database commit. The database stays the truth: anything
the store does not have is loaded from the database and refilled by the same write.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from parley.domain.chat import HistoryMessage
from parley.domain.retrieval import RetrievedChunk
from parley.providers.memory.base import TurnRead, TurnStore, TurnWrite

_FIELDS = (
    "chunk_id",
    "collection_id",
    "document_id",
    "document_title",
    "source",
    "text",
    "token_count",
    "position",
    "meta",
    "score",
    "dense_rank",
    "keyword_rank",
)


@dataclass(slots=True)
class PendingWrite:
    """What a prepared turn will add to the store once its messages are committed."""

    read: TurnRead
    scope: list[str]
    refill: list[HistoryMessage] | None
    embedding_key: str | None
    query_digest: str | None
    embedding: bytes | None = None
    search: bytes | None = None


def encode_sources(chunks: list[RetrievedChunk]) -> bytes:
    """Search results as compact JSON (the cached search payload)."""
    rows = [[getattr(c, name) for name in _FIELDS] for c in chunks]
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":")).encode()


def decode_sources(raw: bytes) -> list[RetrievedChunk] | None:
    """The inverse of :func:`encode_sources`; None for anything unreadable (a miss)."""
    try:
        rows = json.loads(raw)
        return [RetrievedChunk(**dict(zip(_FIELDS, row, strict=True))) for row in rows]
    except (ValueError, TypeError):
        return None


class HotTurns:
    """Keys, encodings and refill rules around a :class:`TurnStore`."""

    def __init__(self, store: TurnStore, *, model_id: str, history_limit: int) -> None:
        self.store = store
        self._model_id = model_id
        self._history_limit = history_limit

    def keys(self, text: str, top_k: int) -> tuple[str, str]:
        """(embedding cache key, search query digest) of a question."""
        text_digest = hashlib.sha256(text.encode()).hexdigest()
        embedding_key = f"{self._model_id}:{text_digest}"
        query_digest = hashlib.sha256(f"{self._model_id}|{top_k}|{text}".encode()).hexdigest()
        return embedding_key, query_digest

    async def read(
        self, *, session_id: str, text: str, top_k: int, scope_hint: list[str] | None
    ) -> tuple[TurnRead, str, str]:
        """ONE round trip: everything cached for this turn, plus the keys used."""
        embedding_key, query_digest = self.keys(text, top_k)
        read = await self.store.read(
            session_id=session_id,
            history_limit=self._history_limit,
            embedding_key=embedding_key,
            query_digest=query_digest,
            scope_hint=scope_hint,
        )
        return read, embedding_key, query_digest

    @staticmethod
    def vector(read: TurnRead, dimension: int) -> np.ndarray | None:
        """The cached query embedding, if present and of the right size."""
        if read.embedding is None or len(read.embedding) != 4 * dimension:
            return None
        return np.frombuffer(read.embedding, dtype=np.float32)

    async def write(
        self, pending: PendingWrite, *, session_id: str, appended: list[HistoryMessage]
    ) -> None:
        """ONE round trip after the commit: the new messages and the computed caches."""
        update = TurnWrite(
            scope=pending.scope,
            appended=appended,
            refill=pending.refill,
            embedding=pending.embedding,
            search=pending.search,
        )
        await self.store.write(
            session_id=session_id,
            update=update,
            read=pending.read,
            embedding_key=pending.embedding_key,
            query_digest=pending.query_digest,
        )

    def stats(self) -> dict[str, Any]:
        """The store's counters."""
        return dict(self.store.stats())
