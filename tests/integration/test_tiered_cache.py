"""``RedisCache`` (shared L2) and ``TieredCache`` (in-process L1 + L2) on a real Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from parley.providers.cache.base import Cache
from parley.providers.cache.memory import MemoryCache
from parley.providers.cache.redis import RedisCache
from parley.providers.cache.tiered import TieredCache
from parley.providers.redis_support import RedisGuard, create_redis
from parley.settings import RedisSettings
from tests.services import unavailable

REDIS_URL = os.environ.get("PARLEY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
async def guard() -> AsyncIterator[RedisGuard]:
    """A guard over the test Redis, or skip/fail when it is unreachable."""
    client = create_redis(REDIS_URL, RedisSettings())
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        unavailable(f"Redis is not reachable (PARLEY_TEST_REDIS_URL or 127.0.0.1:6379): {exc}")
    try:
        yield RedisGuard(client, retry_after_s=1)
    finally:
        await client.aclose()


@pytest.fixture
async def prefix(guard: RedisGuard) -> AsyncIterator[str]:
    """A unique key prefix; its keys are deleted afterwards."""
    value = f"parley-test:{uuid.uuid4().hex}:"
    yield value
    keys = [key async for key in guard.client.scan_iter(match=f"{value}*")]
    if keys:
        await guard.client.delete(*keys)


def l1() -> MemoryCache:
    return MemoryCache(maxsize=100, ttl_s=60)


async def test_redis_cache_stores_bytes_with_a_ttl(guard: RedisGuard, prefix: str) -> None:
    cache = RedisCache(guard, f"{prefix}emb:", ttl_s=30)
    assert isinstance(cache, Cache)
    assert await cache.get("k") is None
    await cache.set("k", b"\x00\xff")
    assert await cache.get("k") == b"\x00\xff"
    assert 0 < await guard.client.pttl(f"{prefix}emb:k") <= 30_000
    await cache.set("short", b"v", ttl_s=5)
    assert 0 < await guard.client.pttl(f"{prefix}emb:short") <= 5_000
    await cache.set("never", b"v", ttl_s=0)  # as MemoryCache: a zero TTL stores nothing
    assert await cache.get("never") is None
    await cache.delete("k")
    assert await cache.get("k") is None
    assert cache.stats() == {"hits": 1, "misses": 3}


async def test_redis_cache_rejects_values_that_are_not_bytes(
    guard: RedisGuard, prefix: str
) -> None:
    cache = RedisCache(guard, prefix, ttl_s=30)
    with pytest.raises(TypeError):
        await cache.set("k", "text")
    with pytest.raises(TypeError):
        await cache.set("k", [1.0, 2.0])


async def test_tiered_cache_reads_l1_then_l2_and_fills_l1(guard: RedisGuard, prefix: str) -> None:
    shared = f"{prefix}srch:"
    one = TieredCache(l1(), RedisCache(guard, shared, ttl_s=30))
    two = TieredCache(l1(), RedisCache(guard, shared, ttl_s=30))  # another instance
    assert isinstance(one, Cache)

    assert await one.get("q") is None  # miss at both levels
    await one.set("q", b"result")
    assert await one.get("q") == b"result"  # L1
    assert await two.get("q") == b"result"  # L2, then copied into two's L1
    assert await two.get("q") == b"result"  # L1
    assert one.stats() == {"l1_hits": 1, "l1_misses": 1, "l2_hits": 0, "l2_misses": 1}
    assert two.stats() == {"l1_hits": 1, "l1_misses": 1, "l2_hits": 1, "l2_misses": 0}

    await one.delete("q")
    assert await one.get("q") is None
    assert await guard.client.exists(f"{shared}q") == 0


async def test_tiered_cache_stores_nothing_the_l2_rejects(guard: RedisGuard, prefix: str) -> None:
    memory = l1()
    cache = TieredCache(memory, RedisCache(guard, prefix, ttl_s=30))
    with pytest.raises(TypeError):
        await cache.set("k", "not bytes")
    assert await memory.get("k") is None


async def test_a_down_l2_only_costs_misses() -> None:
    settings = RedisSettings(socket_timeout_s=0.2, connect_timeout_s=0.2, retry_after_s=5)
    client: Redis = create_redis("redis://127.0.0.1:1/0", settings)  # nothing listens there
    guard = RedisGuard(client, retry_after_s=settings.retry_after_s)
    l2 = RedisCache(guard, "parley-test:", ttl_s=30)
    cache = TieredCache(l1(), l2)
    try:
        await cache.set("k", b"v")  # L2 fails (once), L1 still stores
        assert guard.status() == "degraded" and guard.round_trips == 1
        assert await cache.get("k") == b"v"
        assert await cache.get("other") is None  # L2 skipped: no network attempt
        assert guard.round_trips == 1
        assert cache.stats() == {"l1_hits": 1, "l1_misses": 1, "l2_hits": 0, "l2_misses": 1}
        assert l2.stats() == {"hits": 0, "misses": 1}
    finally:
        await client.aclose()
