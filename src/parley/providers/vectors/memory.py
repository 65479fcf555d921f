"""In-process VectorIndex: exact numpy search for small collections, usearch HNSW for big ones.

Each collection is a rebuildable copy of the database's vectors. Below ``hnsw_threshold``
vectors a collection is a contiguous float32 matrix searched exactly (``matrix @ q``); at the
threshold it is promoted to a usearch HNSW graph (cosine, f32, keyed by chunk id).

Concurrency: per collection, one asyncio.Lock serialises mutations (so a slow HNSW build
never races another writer) and a readers-writer lock lets searches run in parallel while
excluding in-place changes. Big builds happen before the swap, so searches keep using the
old copy meanwhile; HNSW inserts are applied in slices so searches interleave.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import json
import logging
import os
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from parley.errors import InvalidInput
from parley.providers.vectors.base import Ids, Vectors

_T = TypeVar("_T")
_log = logging.getLogger(__name__)

_COLLECTION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_PERSIST_FORMAT = 1
_HNSW_WRITE_SLICE = 256  # inserts per write-lock hold; bounds how long a search can wait
_INLINE_SEARCH_ROWS = 4096  # exact search below this is cheaper inline than a thread hop


async def _run_blocking(fn: Callable[..., _T], /, *args: Any) -> _T:
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


class _RWLock:
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


class _ExactStore:
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
class _HnswParams:
    dimension: int
    connectivity: int
    expansion_add: int
    expansion_search: int


class _HnswStore:
    """A usearch HNSW graph (cosine, f32) keyed by chunk id (int64 bits viewed as uint64)."""

    def __init__(self, index: Any) -> None:
        self.index = index

    @classmethod
    def build(cls, params: _HnswParams, ids: Ids, vectors: Vectors) -> _HnswStore:
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
    def restore(cls, path: Path, params: _HnswParams) -> _HnswStore | None:
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


_Store = _ExactStore | _HnswStore


@dataclass(eq=False)
class _Collection:
    store: _Store
    version: int | None = None
    dirty: bool = False  # HNSW changed since the last save/load
    mutex: asyncio.Lock = field(default_factory=asyncio.Lock)
    rw: _RWLock = field(default_factory=_RWLock)


class InMemoryVectorIndex:
    """Per-collection exact or HNSW search; optional on-disk copies of HNSW collections."""

    def __init__(
        self,
        *,
        persist_dir: Path | None,
        hnsw_threshold: int,
        connectivity: int,
        expansion_add: int,
        expansion_search: int,
        dimension: int,
    ) -> None:
        if hnsw_threshold <= 0 or dimension <= 0:
            raise ValueError("hnsw_threshold and dimension must be positive")
        self._persist_dir = persist_dir
        self._threshold = hnsw_threshold
        self._params = _HnswParams(dimension, connectivity, expansion_add, expansion_search)
        self._dimension = dimension
        self._collections: dict[str, _Collection] = {}

    # -- reading ---------------------------------------------------------------------------

    def version(self, collection_id: str) -> int | None:
        """The collection version this index reflects, or None when it holds no copy."""
        coll = self._collections.get(collection_id)
        return coll.version if coll is not None else None

    def size(self, collection_id: str) -> int:
        """How many vectors the copy of a collection holds (0 when unknown)."""
        coll = self._collections.get(collection_id)
        return len(coll.store) if coll is not None else 0

    def mode(self, collection_id: str) -> str | None:
        """``"exact"`` or ``"hnsw"`` for a known collection, else None."""
        coll = self._collections.get(collection_id)
        if coll is None:
            return None
        return "hnsw" if isinstance(coll.store, _HnswStore) else "exact"

    async def search(
        self, collection_ids: Sequence[str], query: Vectors, *, k: int
    ) -> list[tuple[int, float]]:
        """The ``k`` nearest chunk ids across collections with cosine similarity, best first."""
        if k <= 0:
            return []
        q = self._query(query)
        colls = [self._collections.get(cid) for cid in dict.fromkeys(collection_ids)]
        parts = await asyncio.gather(*(self._search_one(c, q, k) for c in colls if c is not None))
        best: dict[int, float] = {}
        for key, score in (hit for part in parts for hit in part):
            if score > best.get(key, -np.inf):
                best[key] = score
        return heapq.nlargest(k, best.items(), key=lambda hit: hit[1])

    async def _search_one(self, coll: _Collection, q: Vectors, k: int) -> list[tuple[int, float]]:
        async with coll.rw.read():
            store = coll.store
            if isinstance(store, _ExactStore) and len(store) < _INLINE_SEARCH_ROWS:
                return store.search(q, k)
            return await _run_blocking(store.search, q, k)

    # -- writing ---------------------------------------------------------------------------

    async def replace(
        self, collection_id: str, *, ids: Ids, vectors: Vectors, version: int
    ) -> None:
        """Replace the whole copy of a collection (a rebuild from the database)."""
        keys, rows = self._batch(collection_id, ids, vectors)
        async with self._mutating(collection_id) as coll:
            # Build aside while searches keep using the old copy; then swap.
            store = await _run_blocking(self._build, keys, rows)
            async with coll.rw.write():
                coll.store, coll.version = store, version
                coll.dirty = isinstance(store, _HnswStore)

    async def add(self, collection_id: str, *, ids: Ids, vectors: Vectors, version: int) -> None:
        """Add (or overwrite) vectors and record the new collection version."""
        keys, rows = self._batch(collection_id, ids, vectors)
        async with self._mutating(collection_id) as coll:
            store = coll.store
            if isinstance(store, _ExactStore) and len(store) + len(keys) >= self._threshold:
                promoted = await _run_blocking(self._promote, store, keys, rows)
                async with coll.rw.write():
                    coll.store = promoted
            elif isinstance(store, _ExactStore):
                async with coll.rw.write():
                    await _run_blocking(store.upsert, keys, rows)
            else:
                for start in range(0, len(keys), _HNSW_WRITE_SLICE):
                    part = slice(start, start + _HNSW_WRITE_SLICE)
                    async with coll.rw.write():
                        await _run_blocking(store.upsert, keys[part], rows[part])
            coll.version = version
            coll.dirty = coll.dirty or isinstance(coll.store, _HnswStore)

    async def remove(self, collection_id: str, *, ids: Sequence[int], version: int) -> None:
        """Remove vectors by id and record the new version (no-op for an unknown collection)."""
        coll = self._collections.get(collection_id)
        if coll is None:
            return  # no copy to update; recording a version would claim a copy we lack
        keys = [int(key) for key in ids]
        async with coll.mutex:
            if self._collections.get(collection_id) is not coll:
                return  # dropped meanwhile
            store = coll.store
            step = _HNSW_WRITE_SLICE if isinstance(store, _HnswStore) else max(1, len(keys))
            for start in range(0, len(keys), step):
                async with coll.rw.write():
                    await _run_blocking(store.remove, keys[start : start + step])
            coll.version = version
            coll.dirty = coll.dirty or isinstance(store, _HnswStore)

    async def drop(self, collection_id: str) -> None:
        """Forget a collection entirely, including its persisted copy."""
        coll = self._collections.get(collection_id)
        if coll is not None:
            async with coll.mutex:
                if self._collections.get(collection_id) is coll:
                    del self._collections[collection_id]
        if self._persist_dir is not None and _COLLECTION_ID.fullmatch(collection_id):
            for path in self._paths(collection_id):
                path.unlink(missing_ok=True)

    @contextlib.asynccontextmanager
    async def _mutating(self, collection_id: str) -> AsyncIterator[_Collection]:
        """Hold the collection's writer mutex, creating it if needed; survives a racing drop."""
        while True:
            coll = self._collections.get(collection_id)
            if coll is None:
                coll = _Collection(store=self._empty())
                self._collections[collection_id] = coll
            async with coll.mutex:
                if self._collections.get(collection_id) is coll:
                    yield coll
                    return

    # -- persistence -----------------------------------------------------------------------

    async def save(self, collection_id: str) -> bool:
        """Write an HNSW collection to ``persist_dir``; False if there is nothing to save."""
        self._check_id(collection_id)
        coll = self._collections.get(collection_id)
        if self._persist_dir is None or coll is None:
            return False
        async with coll.mutex:  # no writer in between: content and version match
            store, version = coll.store, coll.version
            if not isinstance(store, _HnswStore) or version is None:
                return False
            await _run_blocking(self._write_files, collection_id, store, version)
            coll.dirty = False
        return True

    async def load_persisted(self, collection_id: str, expected_version: int) -> bool:
        """Load a saved HNSW copy if it reflects ``expected_version``; True when loaded."""
        self._check_id(collection_id)
        if self._persist_dir is None:
            return False
        async with self._mutating(collection_id) as coll:  # no writer may slip in meanwhile
            try:
                store = await _run_blocking(self._read_files, collection_id, expected_version)
            except (OSError, ValueError, RuntimeError) as exc:
                _log.warning("ignoring unreadable vector index copy %s: %s", collection_id, exc)
                store = None
            if store is None:
                if coll.version is None and len(coll.store) == 0:
                    del self._collections[collection_id]  # leave no empty placeholder behind
                return False
            async with coll.rw.write():
                coll.store, coll.version, coll.dirty = store, expected_version, False
        return True

    def _paths(self, collection_id: str) -> tuple[Path, Path]:
        assert self._persist_dir is not None
        base = self._persist_dir / collection_id
        return base.with_name(base.name + ".usearch"), base.with_name(base.name + ".json")

    def _write_files(self, collection_id: str, store: _HnswStore, version: int) -> None:
        assert self._persist_dir is not None
        self._persist_dir.mkdir(parents=True, exist_ok=True)
        index_path, meta_path = self._paths(collection_id)
        # The metadata file is the commit marker: remove it first, write it last.
        meta_path.unlink(missing_ok=True)
        tmp_index = index_path.with_name(index_path.name + ".tmp")
        store.save(tmp_index)
        os.replace(tmp_index, index_path)
        meta = {
            "format": _PERSIST_FORMAT,
            "version": version,
            "count": len(store),
            "dimension": self._dimension,
        }
        tmp_meta = meta_path.with_name(meta_path.name + ".tmp")
        tmp_meta.write_text(json.dumps(meta), encoding="utf-8")
        os.replace(tmp_meta, meta_path)

    def _read_files(self, collection_id: str, expected_version: int) -> _HnswStore | None:
        index_path, meta_path = self._paths(collection_id)
        if not (meta_path.is_file() and index_path.is_file()):
            return None
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if (
            meta.get("format") != _PERSIST_FORMAT
            or meta.get("version") != expected_version
            or meta.get("dimension") != self._dimension
        ):
            return None
        store = _HnswStore.restore(index_path, self._params)
        if store is None or len(store) != meta.get("count"):
            return None
        return store

    async def aclose(self) -> None:
        """Save changed HNSW collections (when ``persist_dir`` is set) and forget everything."""
        if self._persist_dir is not None:
            for cid, coll in list(self._collections.items()):
                if coll.dirty:
                    await self.save(cid)
        self._collections.clear()

    # -- helpers ---------------------------------------------------------------------------

    def _empty(self) -> _Store:
        return _ExactStore(
            self._dimension,
            np.zeros(0, dtype=np.int64),
            np.zeros((0, self._dimension), dtype=np.float32),
        )

    def _build(self, ids: Ids, vectors: Vectors) -> _Store:
        if len(ids) >= self._threshold:
            return _HnswStore.build(self._params, ids, vectors)
        return _ExactStore(self._dimension, ids, vectors)

    def _promote(self, store: _ExactStore, ids: Ids, vectors: Vectors) -> _Store:
        """The exact store plus a batch, as HNSW if that reaches the threshold."""
        old_ids, old_rows = store.arrays()
        merged = _ExactStore(self._dimension, old_ids, old_rows)
        merged.upsert(ids, vectors)
        if len(merged) < self._threshold:
            return merged
        return _HnswStore.build(self._params, *merged.arrays())

    def _check_id(self, collection_id: str) -> None:
        # Ids become file names: allow only a safe alphabet (uuid-like), no path tricks.
        if not _COLLECTION_ID.fullmatch(collection_id):
            raise InvalidInput(f"invalid collection id {collection_id!r}")

    def _batch(self, collection_id: str, ids: Ids, vectors: Vectors) -> tuple[Ids, Vectors]:
        """Validated ids and unit rows; for repeated ids the last vector wins."""
        self._check_id(collection_id)
        keys = np.asarray(ids, dtype=np.int64).reshape(-1)
        rows = np.asarray(vectors, dtype=np.float32)
        if len(keys) == 0:
            return keys, np.zeros((0, self._dimension), dtype=np.float32)
        if rows.ndim != 2 or rows.shape != (len(keys), self._dimension):
            raise InvalidInput(
                f"expected vectors of shape ({len(keys)}, {self._dimension}), got {rows.shape}"
            )
        norms = np.linalg.norm(rows, axis=1, keepdims=True)
        if not np.all(np.isfinite(norms)) or np.any(norms == 0):
            raise InvalidInput("vectors must be finite and non-zero")
        rows = rows / norms
        _, first_in_reversed = np.unique(keys[::-1], return_index=True)
        if len(first_in_reversed) != len(keys):
            keep = np.sort(len(keys) - 1 - first_in_reversed)
            keys, rows = keys[keep], rows[keep]
        return np.ascontiguousarray(keys), np.ascontiguousarray(rows, dtype=np.float32)

    def _query(self, query: Vectors) -> Vectors:
        q = np.asarray(query, dtype=np.float32).reshape(-1)
        if q.shape != (self._dimension,):
            raise InvalidInput(f"expected a query of dimension {self._dimension}, got {q.shape}")
        norm = float(np.linalg.norm(q))
        if not np.isfinite(norm) or norm == 0.0:
            raise InvalidInput("query vector must be finite and non-zero")
        normalised: Vectors = q / norm
        return normalised
