"""``TieredCache``: an in-process L1 in front of a shared L2 (e.g. Redis)."""

from __future__ import annotations

from parley.providers.cache.base import Cache


class TieredCache:
    """A ``Cache`` that reads L1 then L2 (filling L1 on an L2 hit) and writes both.

    Keys must already name everything the value depends on (e.g. collection versions), so
    no invalidation message is needed between instances.
    """

    def __init__(self, l1: Cache, l2: Cache) -> None:
        self._l1 = l1
        self._l2 = l2
        self._counts = {"l1_hits": 0, "l1_misses": 0, "l2_hits": 0, "l2_misses": 0}

    async def get(self, key: str) -> object | None:
        """L1, else L2 (copied into L1 with L1's default TTL), else None."""
        value = await self._l1.get(key)
        if value is not None:
            self._counts["l1_hits"] += 1
            return value
        self._counts["l1_misses"] += 1
        value = await self._l2.get(key)
        if value is None:
            self._counts["l2_misses"] += 1
            return None
        self._counts["l2_hits"] += 1
        await self._l1.set(key, value)
        return value

    async def set(self, key: str, value: object, *, ttl_s: float | None = None) -> None:
        """Store in both levels (L2 first, so a value it rejects never lands in L1 alone)."""
        await self._l2.set(key, value, ttl_s=ttl_s)
        await self._l1.set(key, value, ttl_s=ttl_s)

    async def delete(self, key: str) -> None:
        """Drop from both levels (other instances' L1 copies expire by their TTL)."""
        await self._l1.delete(key)
        await self._l2.delete(key)

    def stats(self) -> dict[str, int]:
        """Hits and misses per level."""
        return dict(self._counts)
