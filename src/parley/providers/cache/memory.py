"""In-process TTL + LRU cache (the embedded L1; lost on restart, which is fine for a cache)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

from cachetools import TLRUCache


class _Entry(NamedTuple):
    value: object
    ttl_s: float


def _expires_at(_key: str, entry: _Entry, now: float) -> float:
    return now + entry.ttl_s


class MemoryCache:
    """Bounded, expiring in-process cache; ``maxsize`` 0 disables it (every get misses).

    cachetools' TLRUCache (the per-item-TTL sibling of TTLCache) is used so ``set(ttl_s=...)``
    is honoured per key. Not thread-safe: use it from the event loop only.
    """

    def __init__(
        self, *, maxsize: int, ttl_s: float, timer: Callable[[], float] = time.monotonic
    ) -> None:
        if maxsize < 0:
            raise ValueError("maxsize must be >= 0")
        if ttl_s < 0:
            raise ValueError("ttl_s must be >= 0")
        self._maxsize = maxsize
        self._ttl_s = ttl_s
        self._data: TLRUCache[str, _Entry] | None = (
            TLRUCache(maxsize=maxsize, ttu=_expires_at, timer=timer) if maxsize > 0 else None
        )
        self._hits = 0
        self._misses = 0

    async def get(self, key: str) -> object | None:
        """The cached value, or None on a miss or after expiry."""
        entry = self._data.get(key) if self._data is not None else None
        if entry is None:
            self._misses += 1
            return None
        self._hits += 1
        return entry.value

    async def set(self, key: str, value: object, *, ttl_s: float | None = None) -> None:
        """Store a value for ``ttl_s`` seconds (None: the default TTL; 0: not stored)."""
        ttl = self._ttl_s if ttl_s is None else ttl_s
        if self._data is None or ttl <= 0:
            return
        self._data[key] = _Entry(value, ttl)

    async def delete(self, key: str) -> None:
        """Drop a key if present."""
        if self._data is not None:
            self._data.pop(key, None)

    def clear(self) -> None:
        """Drop every entry (counters are kept)."""
        if self._data is not None:
            self._data.clear()

    def stats(self) -> dict[str, int]:
        """Hits, misses, current size and capacity."""
        size = 0
        if self._data is not None:
            self._data.expire()
            size = len(self._data)
        return {"hits": self._hits, "misses": self._misses, "size": size, "maxsize": self._maxsize}
