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
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from parley.errors import InvalidInput
from parley.providers.vectors.base import Ids, Vectors
from parley.providers.vectors.stores import (
    ExactStore,
    HnswParams,
    HnswStore,
    RWLock,
    Store,
    run_blocking,
)

_log = logging.getLogger(__name__)

_COLLECTION_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_PERSIST_FORMAT = 1
_HNSW_WRITE_SLICE = 256  # inserts per write-lock hold; bounds how long a search can wait
_INLINE_SEARCH_ROWS = 4096  # exact search below this is cheaper inline than a thread hop


@dataclass(eq=False)
class _Collection:
    store: Store
    version: int | None = None
    dirty: bool = False  # HNSW changed since the last save/load
    mutex: asyncio.Lock = field(default_factory=asyncio.Lock)
    rw: RWLock = field(default_factory=RWLock)


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
        self._params = HnswParams(dimension, connectivity, expansion_add, expansion_search)
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
        return "hnsw" if isinstance(coll.store, HnswStore) else "exact"

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
            if isinstance(store, ExactStore) and len(store) < _INLINE_SEARCH_ROWS:
                return store.search(q, k)
            return await run_blocking(store.search, q, k)

    # -- writing ---------------------------------------------------------------------------

    async def replace(
        self, collection_id: str, *, ids: Ids, vectors: Vectors, version: int
    ) -> None:
        """Replace the whole copy of a collection (a rebuild from the database)."""
        keys, rows = self._batch(collection_id, ids, vectors)
        async with self._mutating(collection_id) as coll:
            # Build aside while searches keep using the old copy; then swap.
            store = await run_blocking(self._build, keys, rows)
            async with coll.rw.write():
                coll.store, coll.version = store, version
                coll.dirty = isinstance(store, HnswStore)

    async def add(self, collection_id: str, *, ids: Ids, vectors: Vectors, version: int) -> None:
        """Add (or overwrite) vectors and record the new collection version."""
        keys, rows = self._batch(collection_id, ids, vectors)
        async with self._mutating(collection_id) as coll:
            store = coll.store
            if isinstance(store, ExactStore) and len(store) + len(keys) >= self._threshold:
                promoted = await run_blocking(self._promote, store, keys, rows)
                async with coll.rw.write():
                    coll.store = promoted
            elif isinstance(store, ExactStore):
                async with coll.rw.write():
                    await run_blocking(store.upsert, keys, rows)
            else:
                for start in range(0, len(keys), _HNSW_WRITE_SLICE):
                    part = slice(start, start + _HNSW_WRITE_SLICE)
                    async with coll.rw.write():
                        await run_blocking(store.upsert, keys[part], rows[part])
            coll.version = version
            coll.dirty = coll.dirty or isinstance(coll.store, HnswStore)

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
            step = _HNSW_WRITE_SLICE if isinstance(store, HnswStore) else max(1, len(keys))
            for start in range(0, len(keys), step):
                async with coll.rw.write():
                    await run_blocking(store.remove, keys[start : start + step])
            coll.version = version
            coll.dirty = coll.dirty or isinstance(store, HnswStore)

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
            if not isinstance(store, HnswStore) or version is None:
                return False
            await run_blocking(self._write_files, collection_id, store, version)
            coll.dirty = False
        return True

    async def load_persisted(self, collection_id: str, expected_version: int) -> bool:
        """Load a saved HNSW copy if it reflects ``expected_version``; True when loaded."""
        self._check_id(collection_id)
        if self._persist_dir is None:
            return False
        async with self._mutating(collection_id) as coll:  # no writer may slip in meanwhile
            try:
                store = await run_blocking(self._read_files, collection_id, expected_version)
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

    def _write_files(self, collection_id: str, store: HnswStore, version: int) -> None:
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

    def _read_files(self, collection_id: str, expected_version: int) -> HnswStore | None:
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
        store = HnswStore.restore(index_path, self._params)
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

    def _empty(self) -> Store:
        return ExactStore(
            self._dimension,
            np.zeros(0, dtype=np.int64),
            np.zeros((0, self._dimension), dtype=np.float32),
        )

    def _build(self, ids: Ids, vectors: Vectors) -> Store:
        if len(ids) >= self._threshold:
            return HnswStore.build(self._params, ids, vectors)
        return ExactStore(self._dimension, ids, vectors)

    def _promote(self, store: ExactStore, ids: Ids, vectors: Vectors) -> Store:
        """The exact store plus a batch, as HNSW if that reaches the threshold."""
        old_ids, old_rows = store.arrays()
        merged = ExactStore(self._dimension, old_ids, old_rows)
        merged.upsert(ids, vectors)
        if len(merged) < self._threshold:
            return merged
        return HnswStore.build(self._params, *merged.arrays())

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
