"""CachedEmbedder: repeated queries skip the inner embedder; documents are never cached."""

from __future__ import annotations

import hashlib

import numpy as np

from parley.providers.cache.memory import MemoryCache
from parley.providers.embeddings.base import Embedder
from parley.providers.embeddings.cached import CachedEmbedder
from parley.providers.embeddings.fake import FakeEmbedder


def _make(maxsize: int = 100) -> tuple[CachedEmbedder, FakeEmbedder, MemoryCache]:
    inner = FakeEmbedder(dimension=32)
    cache = MemoryCache(maxsize=maxsize, ttl_s=60)
    return CachedEmbedder(inner, cache), inner, cache


async def test_exposes_inner_identity() -> None:
    cached, inner, _ = _make()
    assert isinstance(cached, Embedder)
    assert (cached.model_id, cached.dimension) == (inner.model_id, inner.dimension)


async def test_second_query_is_served_from_cache() -> None:
    cached, inner, cache = _make()
    first = await cached.embed(["battery warranty?"], kind="query")
    second = await cached.embed(["battery warranty?"], kind="query")
    assert inner.calls == 1 and inner.texts_embedded == 1
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, await inner.embed(["battery warranty?"]))
    key = f"emb:{inner.model_id}:{hashlib.sha256(b'battery warranty?').hexdigest()}"
    assert await cache.get(key) is not None


async def test_mixed_hits_and_misses_keep_order_and_embed_misses_once() -> None:
    cached, inner, _ = _make()
    await cached.embed(["b"], kind="query")
    out = await cached.embed(["a", "b", "a", "c"], kind="query")
    assert inner.calls == 2 and inner.texts_embedded == 1 + 2  # "a" and "c", once each
    expected = await FakeEmbedder(dimension=32).embed(["a", "b", "a", "c"])
    np.testing.assert_array_equal(out, expected)
    assert out.dtype == np.float32


async def test_documents_are_never_cached() -> None:
    cached, inner, cache = _make()
    await cached.embed(["same text"], kind="document")
    await cached.embed(["same text"], kind="document")
    assert inner.calls == 2
    assert cache.stats()["size"] == 0 and cache.stats()["hits"] == 0


async def test_disabled_cache_still_embeds() -> None:
    cached, inner, _ = _make(maxsize=0)
    await cached.embed(["q"], kind="query")
    await cached.embed(["q"], kind="query")
    assert inner.calls == 2
    assert (await cached.embed([], kind="query")).shape == (0, 32)
