"""Deterministic fake embedder: feature hashing of words and character trigrams, no I/O.

Texts that share words get similar vectors, so retrieval tests on the fake are meaningful.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from parley.providers.embeddings.base import EmbedKind, Vectors

_WORD = re.compile(r"\w+", re.UNICODE)
_TRIGRAM_WEIGHT = 0.35  # words dominate; trigrams add a little robustness to inflections


@lru_cache(maxsize=65536)
def _bucket(feature: str, dimension: int) -> tuple[int, float]:
    """A stable (index, sign) for a feature; blake2b, unlike hash(), is not salted per run."""
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dimension, (1.0 if (value >> 63) & 1 else -1.0)


def feature_hash(text: str, dimension: int) -> Vectors:
    """The unit vector the fake assigns to ``text`` (shape ``(dimension,)``, float32)."""
    vector = np.zeros(dimension, dtype=np.float64)
    for word in _WORD.findall(text.lower()):
        index, sign = _bucket("w:" + word, dimension)
        vector[index] += sign
        padded = f"#{word}#"
        for i in range(len(padded) - 2):
            index, sign = _bucket("t:" + padded[i : i + 3], dimension)
            vector[index] += sign * _TRIGRAM_WEIGHT
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:
        # Empty text (or features that cancel out) still needs a unit vector.
        index, sign = _bucket("empty", dimension)
        vector[index] = sign
        norm = 1.0
    return (vector / norm).astype(np.float32)


class FakeEmbedder:
    """Deterministic embedder for tests; counts ``calls`` and ``texts_embedded``."""

    def __init__(self, dimension: int = 64) -> None:
        if dimension <= 0:
            raise ValueError("dimension must be positive")
        self.dimension = dimension
        self.model_id = f"fake-hash-{dimension}"
        self.calls = 0
        self.texts_embedded = 0

    async def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        """Embed texts; ``kind`` does not change the vectors."""
        self.calls += 1
        self.texts_embedded += len(texts)
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([feature_hash(text, self.dimension) for text in texts])

    async def aclose(self) -> None:
        """Nothing to release."""
