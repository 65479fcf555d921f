"""Embedder for any OpenAI-compatible ``/v1/embeddings`` server (OpenAI, vLLM, TEI, Ollama…)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from parley.errors import ProviderError, ProviderTimeout, ProviderUnavailable
from parley.providers.embeddings.base import EmbedKind, Vectors
from parley.providers.extras import require_extra
from parley.providers.llm.sdk_support import public_url

if TYPE_CHECKING:
    import httpx

_PLACEHOLDER_KEY = "unused"  # self-hosted servers often need no key, but the SDK insists on one
_URL_SETTING = "PARLEY_EMBEDDINGS__BASE_URL"


class OpenAIEmbedder:
    """Embeds through the official ``openai`` SDK; vendor errors become Provider* errors."""

    def __init__(
        self,
        *,
        model: str,
        dimension: int,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        batch_size: int = 64,
        http_client: httpx.AsyncClient | None = None,
        max_retries: int = 2,
        max_concurrency: int = 4,
    ) -> None:
        """Build the SDK client once; ``http_client`` is borrowed, not closed by :meth:`aclose`."""
        require_extra("openai", extra="openai", reason="PARLEY_EMBEDDINGS__PROVIDER is openai")
        import openai

        if dimension <= 0 or batch_size <= 0 or max_concurrency <= 0:
            raise ValueError("dimension, batch_size and max_concurrency must be positive")
        self._openai = openai
        self.model_id = model
        self.dimension = dimension
        self._model = model
        self._batch_size = batch_size
        self._max_concurrency = max_concurrency
        # A client passed in belongs to the caller, who closes it.
        self._owns_http_client = http_client is None
        self._client = openai.AsyncOpenAI(
            api_key=api_key or _PLACEHOLDER_KEY,
            base_url=base_url,
            timeout=timeout_s,
            max_retries=max_retries,
            # openai>=3 types this as httpx2.AsyncClient but accepts httpx clients too.
            http_client=cast(Any, http_client),
        )
        # Named in "not reachable" errors; computed once, without credentials.
        self._endpoint = public_url(str(self._client.base_url))

    async def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        """Embed texts in batches (a few in flight at once); ``kind`` is not sent."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        batches = [
            list(texts[i : i + self._batch_size]) for i in range(0, len(texts), self._batch_size)
        ]
        limit = asyncio.Semaphore(self._max_concurrency)

        async def one(batch: list[str]) -> Vectors:
            async with limit:
                return await self._embed_batch(batch)

        tasks = [asyncio.ensure_future(one(batch)) for batch in batches]
        try:
            parts = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return np.concatenate(parts, axis=0)

    async def _embed_batch(self, batch: list[str]) -> Vectors:
        openai = self._openai
        try:
            response = await self._client.embeddings.create(
                model=self._model, input=batch, encoding_format="float"
            )
        except openai.APITimeoutError as exc:
            raise ProviderTimeout(
                f"embedding request to {self._model} at {self._endpoint} timed out",
                url=self._endpoint,
            ) from exc
        except openai.APIConnectionError as exc:  # after its subclass APITimeoutError
            raise ProviderUnavailable(
                f"openai embeddings at {self._endpoint} is not reachable ({_URL_SETTING})",
                url=self._endpoint,
            ) from exc
        except openai.APIStatusError as exc:
            raise ProviderError(
                f"embedding request to {self._model} failed with HTTP {exc.status_code}"
            ) from exc
        except openai.OpenAIError as exc:  # connection errors, malformed responses, ...
            raise ProviderError(f"embedding request to {self._model} failed: {exc}") from exc
        return self._to_vectors(response.data, expected=len(batch))

    def _to_vectors(self, data: Sequence[Any], *, expected: int) -> Vectors:
        if len(data) != expected:
            raise ProviderError(f"embedding server returned {len(data)} vectors for {expected}")
        ordered = sorted(data, key=lambda item: int(item.index))
        try:
            matrix = np.asarray([item.embedding for item in ordered], dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise ProviderError("embedding server returned malformed vectors") from exc
        if matrix.ndim != 2 or matrix.shape[1] != self.dimension:
            got = matrix.shape[1] if matrix.ndim == 2 else "ragged"
            raise ProviderError(
                f"embedding model {self._model} returned dimension {got}, "
                f"configured {self.dimension}"
            )
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        if not np.all(np.isfinite(norms)) or np.any(norms == 0):
            raise ProviderError("embedding server returned a zero or non-finite vector")
        normalised: Vectors = (matrix / norms).astype(np.float32)
        return normalised

    async def aclose(self) -> None:
        """Close the SDK client's connections (unless the HTTP client was passed in)."""
        if self._owns_http_client:
            await self._client.close()
