"""Storage engines behind ``InMemoryVectorIndex``: an exact matrix and a usearch HNSW graph.

Also the small concurrency helpers they need (a readers-writer lock and a thread hop that
cannot abandon its thread).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from parley.providers.vectors.base import Ids, Vectors

_T = TypeVar("_T")


async def run_blocking(fn: Callable[..., _T], /, *args: Any) -> _T:
    """Run ``fn`` in a thread; if cancelled, still wait for it before unwinding.

    A thread cannot be interrupted, so returning early would release the caller's lock while
    the thread still touches the structure the lock protects.
    """
    future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({future})
        if not future.cancelled():
            future.exception()  # mark retrieved; the cancellation wins
        raise


class RWLock:
    """Many readers or one writer; waiting writers go first so they are never starved."""

    def __init__(self) -> None:
        self._cond = asyncio.Condition()
        self._readers = 0
        self._writer = False
        self._writers_waiting = 0

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[None]:
        async with self._cond:
            await self._cond.wait_for(lambda: not self._writer and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            async with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[None]:
        async with self._cond:
            self._writers_waiting += 1
            try:
                await self._cond.wait_for(lambda: not self._writer and self._readers == 0)
            finally:
                self._writers_waiting -= 1
                self._cond.notify_all()
            self._writer = True
        try:
            yield
        finally:
            async with self._cond:
                self._writer = False
                self._cond.notify_all()


class ExactStore:
    """Contiguous float32 rows + int64 ids with amortised growth; search is ``matrix @ q``."""

    def __init__(self, dimension: int, ids: Ids, vectors: Vectors) -> None:
        n = len(ids)
        capacity = max(16, n)
        self._ids = np.empty(capacity, dtype=np.int64)
        self._matrix = np.empty((capacity, dimension), dtype=np.float32)
        self._ids[:n] = ids
        self._matrix[:n] = vectors
        self._n = n
        self._row = {key: row for row, key in enumerate(ids.tolist())}

    def __len__(self) -> int:
        return self._n

    def arrays(self) -> tuple[Ids, Vectors]:
        """Copies of the live ids and rows."""
        return self._ids[: self._n].copy(), self._matrix[: self._n].copy()

    def upsert(self, ids: Ids, vectors: Vectors) -> None:
        rows = np.empty(len(ids), dtype=np.intp)
        n = self._n
        for j, key in enumerate(ids.tolist()):
            row = self._row.get(key)
            if row is None:
                row = self._row[key] = n
                n += 1
            rows[j] = row
        if n > len(self._ids):
            self._grow(max(n, 2 * len(self._ids)))
        self._ids[rows] = ids
        self._matrix[rows] = vectors
        self._n = n

    def _grow(self, capacity: int) -> None:
        ids = np.empty(capacity, dtype=np.int64)
        matrix = np.empty((capacity, self._matrix.shape[1]), dtype=np.float32)
        ids[: self._n] = self._ids[: self._n]
        matrix[: self._n] = self._matrix[: self._n]
        self._ids, self._matrix = ids, matrix

    def remove(self, ids: Sequence[int]) -> None:
        for key in ids:
            row = self._row.pop(int(key), None)
            if row is None:
                continue
            last = self._n - 1
            if row != last:  # keep rows contiguous: move the last row into the hole
                moved = int(self._ids[last])
                self._ids[row] = moved
                self._matrix[row] = self._matrix[last]
                self._row[moved] = row
            self._n = last

    def search(self, query: Vectors, k: int) -> list[tuple[int, float]]:
        n = self._n
        if n == 0:
            return []
        scores = self._matrix[:n] @ query
        k = min(k, n)
        top = np.argpartition(-scores, k - 1)[:k] if k < n else np.arange(n)
        top = top[np.argsort(-scores[top], kind="stable")]
        return list(zip(self._ids[top].tolist(), scores[top].tolist(), strict=True))


@dataclass(frozen=True)
class HnswParams:
    dimension: int
    connectivity: int
    expansion_add: int
    expansion_search: int


class HnswStore:
    """A usearch HNSW graph (cosine, f32) keyed by chunk id (int64 bits viewed as uint64)."""

    def __init__(self, index: Any) -> None:
        self.index = index

    @classmethod
    def build(cls, params: HnswParams, ids: Ids, vectors: Vectors) -> HnswStore:
        from usearch.index import Index

        index = Index(
            ndim=params.dimension,
            metric="cos",
            dtype="f32",
            connectivity=params.connectivity,
            expansion_add=params.expansion_add,
            expansion_search=params.expansion_search,
        )
        store = cls(index)
        if len(ids):
            store.upsert(ids, vectors)
        return store

    def __len__(self) -> int:
        return len(self.index)

    @staticmethod
    def _keys(ids: Ids | Sequence[int]) -> npt.NDArray[np.uint64]:
        return np.ascontiguousarray(np.asarray(ids, dtype=np.int64)).view(np.uint64)

    def upsert(self, ids: Ids, vectors: Vectors) -> None:
        keys = self._keys(ids)
        self._remove_keys(keys)  # usearch rejects duplicate keys; overwrite = remove + add
        self.index.add(keys, vectors, threads=0)

    def remove(self, ids: Sequence[int]) -> None:
        self._remove_keys(self._keys(ids))

    def _remove_keys(self, keys: npt.NDArray[np.uint64]) -> None:
        if len(keys) == 0 or len(self.index) == 0:
            return
        present = np.atleast_1d(self.index.contains(keys))
        if present.any():
            self.index.remove(keys[present])

    def search(self, query: Vectors, k: int) -> list[tuple[int, float]]:
        n = len(self.index)
        if n == 0:
            return []
        matches = self.index.search(query, count=min(k, n), threads=1)
        keys = np.asarray(matches.keys, dtype=np.uint64).view(np.int64)
        scores = 1.0 - np.asarray(matches.distances, dtype=np.float32)
        return list(zip(keys.tolist(), scores.tolist(), strict=True))

    def save(self, path: Path) -> None:
        self.index.save(str(path))

    @classmethod
    def restore(cls, path: Path, params: HnswParams) -> HnswStore | None:
        from usearch.index import Index

        # Search/insert depths are runtime knobs, not stored in the file: apply today's.
        index = Index.restore(
            str(path),
            expansion_add=params.expansion_add,
            expansion_search=params.expansion_search,
        )
        if index is None or index.ndim != params.dimension:
            return None
        return cls(index)


Store = ExactStore | HnswStore
