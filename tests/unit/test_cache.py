"""MemoryCache: TTL + LRU bounds, per-key TTL, counters, and maxsize 0 disabling it."""

from __future__ import annotations

from parley.providers.cache.base import Cache
from parley.providers.cache.memory import MemoryCache


class Clock:
    """A hand-driven monotonic clock."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_get_set_delete_and_stats() -> None:
    cache = MemoryCache(maxsize=10, ttl_s=60)
    assert isinstance(cache, Cache)
    assert await cache.get("k") is None
    await cache.set("k", {"v": 1})
    assert await cache.get("k") == {"v": 1}
    await cache.delete("k")
    await cache.delete("never-there")
    assert await cache.get("k") is None
    assert cache.stats() == {"hits": 1, "misses": 2, "size": 0, "maxsize": 10}


async def test_default_ttl_expires() -> None:
    clock = Clock()
    cache = MemoryCache(maxsize=10, ttl_s=5, timer=clock)
    await cache.set("k", "v")
    clock.now = 4.9
    assert await cache.get("k") == "v"
    clock.now = 5.1
    assert await cache.get("k") is None
    assert cache.stats()["size"] == 0


async def test_per_key_ttl_overrides_default() -> None:
    clock = Clock()
    cache = MemoryCache(maxsize=10, ttl_s=5, timer=clock)
    await cache.set("short", 1, ttl_s=1)
    await cache.set("long", 2, ttl_s=100)
    clock.now = 50
    assert await cache.get("short") is None
    assert await cache.get("long") == 2


async def test_lru_eviction() -> None:
    cache = MemoryCache(maxsize=2, ttl_s=60)
    await cache.set("a", 1)
    await cache.set("b", 2)
    assert await cache.get("a") == 1  # "b" is now least recently used
    await cache.set("c", 3)
    assert await cache.get("b") is None
    assert await cache.get("a") == 1 and await cache.get("c") == 3
    assert cache.stats()["size"] == 2


async def test_maxsize_zero_disables() -> None:
    cache = MemoryCache(maxsize=0, ttl_s=60)
    await cache.set("k", "v")
    assert await cache.get("k") is None
    assert cache.stats() == {"hits": 0, "misses": 1, "size": 0, "maxsize": 0}
