"""Embedder for any OpenAI-compatible ``/v1/embeddings`` server (OpenAI, vLLM, TEI, Ollama…)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from parley.errors import ProviderError
from parley.providers.embeddings.base import EmbedKind, Vectors
from parley.providers.extras import require_extra
from parley.providers.llm.retries import (
    DEFAULT_RETRIES,
    RetryPolicy,
    call_with_retries,
    deadline_at,
)
from parley.providers.llm.sdk_support import ProviderFaults, http_module, public_url

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
        max_retries: int = DEFAULT_RETRIES,
        max_concurrency: int = 4,
    ) -> None:
        """Build the SDK client once; ``http_client`` is borrowed, not closed by :meth:`aclose`.

        ``max_retries`` is Parley's retry policy (``providers/llm/retries.py``), the SDK's is
        off: a batch makes at most ``1 + max_retries`` attempts, all within ``timeout_s``.
        """
        require_extra("openai", extra="openai", reason="PARLEY_EMBEDDINGS__PROVIDER is openai")
        import openai

        if dimension <= 0 or batch_size <= 0 or max_concurrency <= 0:
            raise ValueError("dimension, batch_size and max_concurrency must be positive")
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
            max_retries=0,  # one retry policy: ours, bounded by the call's deadline
            # openai>=3 types this as httpx2.AsyncClient but accepts httpx clients too.
            http_client=cast(Any, http_client),
        )
        self._timeout_s = timeout_s
        self._policy = RetryPolicy(retries=max_retries)
        # Named in "not reachable" errors; computed once, without credentials.
        self._faults = ProviderFaults(
            sdk=openai,
            sdk_error=openai.OpenAIError,
            http=http_module(openai.DefaultAsyncHttpxClient),
            provider="openai",
            port="embeddings",
            model=model,
            timeout_s=timeout_s,
            endpoint=public_url(str(self._client.base_url)),
            setting=_URL_SETTING,
        )

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
        async def attempt() -> Any:
            try:
                return await self._client.embeddings.create(
                    model=self._model, input=batch, encoding_format="float"
                )
            except self._faults.catchable as exc:
                raise self._faults.translate(exc) from exc

        response = await call_with_retries(
            attempt,
            policy=self._policy,
            deadline=deadline_at(self._timeout_s, None),
            timed_out=self._faults.timed_out,
            provider="openai embeddings",
        )
        return self._to_vectors(response, expected=len(batch))

    def _to_vectors(self, response: Any, *, expected: int) -> Vectors:
        """The vectors in ``response``, checked: the SDK hands back a non-JSON body as a
        string and JSON of any shape as a model with whatever fields it had."""
        try:
            data = list(response.data)
            if len(data) != expected:
                raise ValueError(f"{len(data)} vectors for {expected} texts")
            ordered = sorted(data, key=lambda item: int(item.index))
            matrix = np.asarray([item.embedding for item in ordered], dtype=np.float32)
        except (AttributeError, TypeError, ValueError) as exc:
            raise self._faults.malformed("not a list of embeddings", exc) from exc
        if matrix.ndim != 2:
            raise self._faults.malformed("the vectors have different lengths")
        if matrix.shape[1] != self.dimension:
            raise ProviderError(
                f"embedding model {self._model} returned dimension {matrix.shape[1]}, "
                f"configured {self.dimension}"
            )
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        if not np.all(np.isfinite(norms)) or np.any(norms == 0):
            raise self._faults.malformed("a vector is zero or not finite")
        normalised: Vectors = (matrix / norms).astype(np.float32)
        return normalised

    async def aclose(self) -> None:
        """Close the SDK client's connections (unless the HTTP client was passed in)."""
        if self._owns_http_client:
            await self._client.close()
