"""The ``VectorIndex`` port: nearest-neighbour search over chunk vectors, per collection.

The database is the source of truth; an index is a rebuildable copy. Each collection's copy
carries the collection ``version`` it reflects, so callers can tell when it is stale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

Ids = npt.NDArray[np.int64]
Vectors = npt.NDArray[np.float32]


@runtime_checkable
class VectorIndex(Protocol):
    """Cosine-similarity search over unit vectors keyed by integer chunk id."""

    def version(self, collection_id: str) -> int | None:
        """The collection version this index reflects, or None when it holds no copy."""
        ...

    async def replace(
        self, collection_id: str, *, ids: Ids, vectors: Vectors, version: int
    ) -> None:
        """Replace the whole copy of a collection (a rebuild from the database)."""
        ...

    async def add(self, collection_id: str, *, ids: Ids, vectors: Vectors, version: int) -> None:
        """Add (or overwrite) vectors and record the new collection version."""
        ...

    async def remove(self, collection_id: str, *, ids: Sequence[int], version: int) -> None:
        """Remove vectors by id and record the new collection version."""
        ...

    async def drop(self, collection_id: str) -> None:
        """Forget a collection entirely."""
        ...

    async def search(
        self, collection_ids: Sequence[str], query: Vectors, *, k: int
    ) -> list[tuple[int, float]]:
        """The ``k`` nearest chunk ids across collections with cosine similarity, best first."""
        ...

    def size(self, collection_id: str) -> int:
        """How many vectors the copy of a collection holds."""
        ...

    async def aclose(self) -> None:
        """Persist what is worth keeping and release resources."""
        ...
