"""``RedisCache``: the shared L2 behind the in-process L1 (opaque bytes values only)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from parley.providers.redis_support import RedisGuard

if TYPE_CHECKING:
    # Annotations only: importing this module must not need the ``redis`` extra.
    from redis.asyncio import Redis


class RedisCache:
    """A ``Cache`` on Redis under ``prefix``; every call is one round trip through the guard.

    Values must be ``bytes`` (the caller serializes), so nothing is pickled and any instance
    can read what another wrote. While Redis is unavailable every get is a miss and every
    set is dropped, which is always safe for a cache.
    """

    def __init__(self, guard: RedisGuard, prefix: str, ttl_s: float) -> None:
        if ttl_s < 0:
            raise ValueError("ttl_s must be >= 0")
        self._guard = guard
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._hits = 0
        self._misses = 0

    def key(self, key: str) -> str:
        """The Redis key of a cache key."""
        return f"{self._prefix}{key}"

    async def get(self, key: str) -> object | None:
        """The cached bytes, or None on a miss, after expiry or while Redis is unavailable."""
        full = self.key(key)

        async def get(client: Redis) -> bytes | None:
            value = await client.get(full)
            return value if isinstance(value, bytes) else None

        value = await self._guard.call(get)
        if value is None:
            self._misses += 1
            return None
        self._hits += 1
        return value

    async def set(self, key: str, value: object, *, ttl_s: float | None = None) -> None:
        """Store bytes for ``ttl_s`` seconds (None: the default TTL; 0: not stored)."""
        if not isinstance(value, bytes):
            raise TypeError(f"RedisCache stores bytes, not {type(value).__name__}")
        ttl = self._ttl_s if ttl_s is None else ttl_s
        if ttl <= 0:
            return
        full, ttl_ms = self.key(key), max(1, round(ttl * 1000))

        async def put(client: Redis) -> bool:
            return bool(await client.set(full, value, px=ttl_ms))

        await self._guard.call(put)

    async def delete(self, key: str) -> None:
        """Drop a key if present (best effort while Redis is unavailable)."""
        full = self.key(key)

        async def delete(client: Redis) -> int:
            return int(await client.delete(full))

        await self._guard.call(delete)

    def stats(self) -> dict[str, int]:
        """Hits and misses (a miss includes a lookup skipped while Redis was unavailable)."""
        return {"hits": self._hits, "misses": self._misses}
