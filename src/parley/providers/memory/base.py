"""The ``TurnStore`` port: everything a chat turn keeps in Redis, read and written in one go.

A chat turn reads once (scope, recent history, cached query embedding, cached search) and
writes once (appended messages, refilled history, newly computed caches). The database stays
the source of truth: every ``None`` here means "not cached", and the caller falls back to it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from parley.domain.chat import HistoryMessage


@dataclass(slots=True)
class TurnRead:
    """What the store knew at the start of a turn (``None`` = not cached)."""

    scope: list[str] | None
    """The session's collection ids; None = unknown to the store."""
    history: list[HistoryMessage] | None
    """Recent history, oldest first; None = not cached (load from the DB, then refill)."""
    embedding: bytes | None
    """Cached query embedding (float32 bytes)."""
    search: bytes | None
    """Cached search payload for (query digest, scope, current versions)."""
    versions: dict[str, int] = field(default_factory=dict)
    """Current collection versions known to the store (missing = unknown)."""


@dataclass(slots=True)
class TurnWrite:
    """What a finished turn adds to the store."""

    scope: list[str]
    appended: list[HistoryMessage]
    """The new user + assistant messages."""
    refill: list[HistoryMessage] | None
    """After a history miss: the recent history loaded from the DB (written before
    ``appended``). Without it, a session the store does not know is left uncached, so the
    store never holds a partial history."""
    embedding: bytes | None
    """Stored under the read's embedding key (when it missed)."""
    search: bytes | None
    """Stored under the search key derived from the read's versions (when it missed and
    every version was known)."""


def empty_read() -> TurnRead:
    """A read where nothing was cached (the store is unavailable or knows nothing)."""
    return TurnRead(scope=None, history=None, embedding=None, search=None, versions={})


@runtime_checkable
class TurnStore(Protocol):
    """Hot per-session state and per-query caches; exactly one round trip per call."""

    async def read(
        self,
        *,
        session_id: str,
        history_limit: int,
        embedding_key: str | None,
        query_digest: str | None,
        scope_hint: list[str] | None,
    ) -> TurnRead:
        """Everything cached for this turn, in ONE round trip (all None when unavailable)."""
        ...

    async def write(
        self,
        *,
        session_id: str,
        update: TurnWrite,
        read: TurnRead,
        embedding_key: str | None,
        query_digest: str | None,
    ) -> None:
        """Append the turn and store what was computed, in ONE round trip (best effort)."""
        ...

    async def publish_versions(self, versions: dict[str, int]) -> None:
        """After a collection change commits: raise the stored versions (never lowers one)."""
        ...

    async def forget_session(self, session_id: str) -> None:
        """Drop a session's hot state (after the session is deleted)."""
        ...

    def status(self) -> str:
        """``ok`` or ``degraded``."""
        ...

    def stats(self) -> dict[str, int]:
        """Round trips and hit/miss counters per cache."""
        ...
