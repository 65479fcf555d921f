"""An Embedder decorator that caches query embeddings (chat queries repeat; documents do not)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from parley.providers.cache.base import Cache
from parley.providers.embeddings.base import Embedder, EmbedKind, Vectors


class CachedEmbedder:
    """Looks query embeddings up in a Cache; document embeddings pass straight through."""

    def __init__(self, inner: Embedder, cache: Cache) -> None:
        self._inner = inner
        self._cache = cache
        self.model_id = inner.model_id
        self.dimension = inner.dimension

    def cache_key(self, text: str) -> str:
        """The cache key of a query text: model id plus the text's sha256."""
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return f"emb:{self.model_id}:{digest}"

    def _decode(self, value: object) -> Vectors | None:
        # Stored as raw float32 bytes so a shared (Redis) cache can hold them as-is.
        if not isinstance(value, bytes) or len(value) != self.dimension * 4:
            return None
        return np.frombuffer(value, dtype=np.float32)

    async def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        """Embed texts, serving repeated queries from the cache."""
        if kind != "query" or not texts:
            return await self._inner.embed(texts, kind=kind)
        out = np.empty((len(texts), self.dimension), dtype=np.float32)
        missing: dict[str, list[int]] = {}  # distinct missed text -> its rows
        for row, text in enumerate(texts):
            if text in missing:
                missing[text].append(row)
                continue
            cached = self._decode(await self._cache.get(self.cache_key(text)))
            if cached is None:
                missing[text] = [row]
            else:
                out[row] = cached
        if missing:
            fresh = await self._inner.embed(list(missing), kind="query")
            for (text, rows), vector in zip(missing.items(), fresh, strict=True):
                out[rows] = vector
                await self._cache.set(self.cache_key(text), vector.astype(np.float32).tobytes())
        return out

    async def aclose(self) -> None:
        """Close the wrapped embedder (the cache is shared and closed by its owner)."""
        await self._inner.aclose()

    async def warmup(self) -> None:
        """Let the wrapped embedder load its model now, if it has one to load."""
        warmup = getattr(self._inner, "warmup", None)
        if warmup is not None:
            await warmup()
