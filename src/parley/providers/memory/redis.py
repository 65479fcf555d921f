"""``RedisTurnStore``: session hot history and per-turn caches, one round trip per call.

Best-effort bookkeeping for calls that never reached Redis (it was down or slow):

* versions that ``publish_versions`` could not store are kept in process and raised by the
  next successful ``read`` or ``publish_versions`` (same round trip);
* sessions whose turn could not be appended are kept in process too; the next successful
  ``read`` drops their cached history so it is refilled from the database.

Both live only in this process (bounded): if it exits first, or another instance serves the
session before this one reaches Redis again, the cache can stay stale until the TTLs expire.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import structlog

from parley.domain.chat import HistoryMessage, Role
from parley.providers.memory import scripts
from parley.providers.memory.base import TurnRead, TurnWrite, empty_read
from parley.providers.redis_support import RedisGuard
from parley.settings import RedisSettings

if TYPE_CHECKING:
    # Annotations only: importing this module must not need the ``redis`` extra.
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

log = structlog.get_logger(__name__)

# Bounds of the in-process leftovers (and of how many ride along with one read).
MAX_DIRTY_SESSIONS = 10_000
FLUSH_BATCH = 500
_ROLES: frozenset[str] = frozenset({"system", "user", "assistant"})


def encode_message(message: HistoryMessage) -> bytes:
    """One history entry: a compact JSON array ``[role, content, token_count]``."""
    item = [message.role, message.content, message.token_count]
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()


def decode_message(raw: bytes) -> HistoryMessage:
    """The inverse of ``encode_message``; ValueError on anything else."""
    item = json.loads(raw)
    if not isinstance(item, list) or len(item) != 3:
        raise ValueError("history entry is not [role, content, tokens]")
    role, content, tokens = item
    if role not in _ROLES or not isinstance(content, str) or not isinstance(tokens, int):
        raise ValueError("history entry has bad fields")
    return HistoryMessage(role=cast(Role, role), content=content, token_count=tokens)


def _scope_json(scope: Sequence[str]) -> str:
    return json.dumps(list(scope), ensure_ascii=False, separators=(",", ":"))


class RedisTurnStore:
    """The ``TurnStore`` on Redis: a Lua script to read, a Lua script to write."""

    def __init__(self, guard: RedisGuard, settings: RedisSettings) -> None:
        self._guard = guard
        self._settings = settings
        self._prefix = settings.key_prefix
        self._read_script = guard.client.register_script(scripts.READ)
        self._write_script = guard.client.register_script(scripts.WRITE)
        self._publish_script = guard.client.register_script(scripts.PUBLISH)
        self._pending: dict[str, int] = {}
        self._dirty: dict[str, None] = {}  # insertion-ordered set
        self._counts = dict.fromkeys(
            (
                "round_trips",
                "history_hits",
                "history_misses",
                "embedding_l2_hits",
                "embedding_l2_misses",
                "search_l2_hits",
                "search_l2_misses",
                "dirty_dropped",
            ),
            0,
        )

    def history_key(self, session_id: str) -> str:
        """The session's history list."""
        return f"{self._prefix}s:{session_id}:h"

    def meta_key(self, session_id: str) -> str:
        """The session's meta (history flag + scope)."""
        return f"{self._prefix}s:{session_id}:m"

    def embedding_key(self, key: str) -> str:
        """Where a query embedding is cached."""
        return f"{self._prefix}emb:{key}"

    def search_key(
        self, query_digest: str, scope: list[str], versions: dict[str, int]
    ) -> str | None:
        """Where a search is cached (same derivation as the read script); None if unknown."""
        digest = scripts.search_digest(query_digest, scope, versions)
        return None if digest is None else f"{self._prefix}srch:{digest}"

    def version_key(self, collection_id: str) -> str:
        """A collection's published version (never expires)."""
        return f"{self._prefix}cv:{collection_id}"

    async def read(
        self,
        *,
        session_id: str,
        history_limit: int,
        embedding_key: str | None,
        query_digest: str | None,
        scope_hint: list[str] | None,
    ) -> TurnRead:
        """Scope, recent history, cached embedding and search in ONE script call."""
        pending = dict(self._pending)
        dirty = list(self._dirty)[:FLUSH_BATCH]
        keys = [self.history_key(session_id), self.meta_key(session_id)]
        if embedding_key is not None:
            keys.append(self.embedding_key(embedding_key))
        args: list[str | int] = [
            max(history_limit, 0),
            "" if scope_hint is None else _scope_json(scope_hint),
            self._prefix,
            query_digest or "",
            "0" if embedding_key is None else "1",
            len(pending),
            len(dirty),
        ]
        for cid, version in pending.items():
            args += [cid, version]
        args += dirty
        raw = await self._run(self._read_script, keys, args)
        if raw is None:
            result = empty_read()
        else:
            self._flushed(pending, dirty)
            result = self._parse(session_id, raw, scope_hint)
        self._count_read(result, embedding_key, query_digest)
        return result

    async def write(
        self,
        *,
        session_id: str,
        update: TurnWrite,
        read: TurnRead,
        embedding_key: str | None,
        query_digest: str | None,
    ) -> None:
        """Append the turn (after ``refill``) and store new caches in ONE script call."""
        keys = [self.history_key(session_id), self.meta_key(session_id)]
        values: list[bytes] = []
        has_embedding = update.embedding is not None and embedding_key is not None
        if update.embedding is not None and embedding_key is not None:
            keys.append(self.embedding_key(embedding_key))
            values.append(update.embedding)
        search_key = None
        if update.search is not None and query_digest:
            search_key = self.search_key(query_digest, update.scope, read.versions)
        if search_key is not None and update.search is not None:
            keys.append(search_key)
            values.append(update.search)
        touches_history = update.refill is not None or bool(update.appended)
        if not values and not touches_history:
            return
        forced = session_id in self._dirty
        mode = "0" if update.refill is None else ("2" if forced else "1")
        refill = update.refill or []
        args: list[str | int | bytes] = [
            self._settings.history_max_messages,
            self._settings.history_ttl_s,
            self._settings.cache_ttl_s,
            _scope_json(update.scope),
            mode,
            len(refill),
            len(update.appended),
            "1" if has_embedding else "0",
            "0" if search_key is None else "1",
            *values,
            *(encode_message(m) for m in refill),
            *(encode_message(m) for m in update.appended),
        ]
        done = await self._run(self._write_script, keys, args)
        if done is None:
            if touches_history:
                self._mark_dirty(session_id)
        elif forced and mode == "2":
            self._dirty.pop(session_id, None)

    async def publish_versions(self, versions: dict[str, int]) -> None:
        """Raise each collection's stored version (set-if-greater), with leftovers, in ONE call."""
        for cid, version in versions.items():
            if version < 0:
                raise ValueError(f"version of {cid} must be >= 0")
            self._pending[cid] = max(version, self._pending.get(cid, version))
        pending = dict(self._pending)
        if not pending:
            return
        args: list[str | int] = [self._prefix]
        for cid, version in pending.items():
            args += [cid, version]
        if await self._run(self._publish_script, [], args) is not None:
            self._flushed(pending, [])

    async def forget_session(self, session_id: str) -> None:
        """Drop the session's history and meta (one DEL)."""
        keys = (self.history_key(session_id), self.meta_key(session_id))

        async def delete(client: Redis) -> int:
            self._counts["round_trips"] += 1
            return int(await client.delete(*keys))

        if await self._guard.call(delete) is not None:
            self._dirty.pop(session_id, None)
        else:
            # Not reached: drop it on the next successful read, like a missed write.
            self._mark_dirty(session_id)

    def status(self) -> str:
        """``ok`` or ``degraded`` (the shared guard's state)."""
        return self._guard.status()

    def stats(self) -> dict[str, int]:
        """This store's round trips, hits and misses per cache, and leftovers."""
        return {
            **self._counts,
            "pending_versions": len(self._pending),
            "dirty_sessions": len(self._dirty),
        }

    async def _run(self, script: AsyncScript, keys: list[str], args: Sequence[Any]) -> Any:
        async def run(client: Redis) -> Any:
            self._counts["round_trips"] += 1
            return await script(keys=keys, args=args, client=client)

        return await self._guard.call(run)

    def _parse(self, session_id: str, raw: list[Any], hint: list[str] | None) -> TurnRead:
        meta, entries, embedding, search, found = raw
        scope: list[str] | None = None
        if meta is not None:
            scope = [str(cid) for cid in json.loads(meta[1:])]
        used = scope if scope is not None else (hint or [])
        versions = {cid: int(v) for cid, v in zip(used, found, strict=False) if v is not None}
        history: list[HistoryMessage] | None = None
        if entries is not None:
            try:
                history = [decode_message(entry) for entry in entries]
            except ValueError as exc:
                # Unreadable (e.g. written by another format): a miss, and the refill
                # written after this turn must replace it.
                log.warning("redis_history_unreadable", session_id=session_id, error=str(exc))
                self._mark_dirty(session_id)
        return TurnRead(
            scope=scope, history=history, embedding=embedding, search=search, versions=versions
        )

    def _count_read(self, read: TurnRead, embedding_key: str | None, digest: str | None) -> None:
        c = self._counts
        c["history_hits" if read.history is not None else "history_misses"] += 1
        if embedding_key is not None:
            c["embedding_l2_hits" if read.embedding is not None else "embedding_l2_misses"] += 1
        if digest:
            c["search_l2_hits" if read.search is not None else "search_l2_misses"] += 1

    def _flushed(self, versions: dict[str, int], sessions: list[str]) -> None:
        for cid, version in versions.items():
            if self._pending.get(cid) == version:
                del self._pending[cid]
        for sid in sessions:
            self._dirty.pop(sid, None)

    def _mark_dirty(self, session_id: str) -> None:
        self._dirty.pop(session_id, None)
        self._dirty[session_id] = None
        while len(self._dirty) > MAX_DIRTY_SESSIONS:
            del self._dirty[next(iter(self._dirty))]
            self._counts["dirty_dropped"] += 1
