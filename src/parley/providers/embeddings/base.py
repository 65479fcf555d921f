"""The ``Embedder`` port: text to L2-normalised float32 vectors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

EmbedKind = Literal["document", "query"]
Vectors = npt.NDArray[np.float32]


@runtime_checkable
class Embedder(Protocol):
    """Embeds texts in batches; never blocks the event loop."""

    model_id: str
    """Identifies the vector space; vectors of different ids are never mixed."""
    dimension: int

    async def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        """Return an ``(len(texts), dimension)`` float32 array of unit vectors."""
        ...

    async def aclose(self) -> None:
        """Release sessions, threads or connections."""
        ...
