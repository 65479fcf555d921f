"""``HFTokenCounter``: exact WordPiece counts from the tokenizer bundled with the local embedder.

The all-MiniLM-L6-v2 ``tokenizer.json`` ships inside Parley (see the NOTICE beside it) and
is checked against a pinned sha256 every time it is loaded, so an altered or mismatched file
can never silently change token counts or embeddings.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from parley.errors import ConfigurationError, ProviderUnavailable

if TYPE_CHECKING:
    from tokenizers import Tokenizer

BUNDLED_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
# Relative to the parley.providers package: the file lives with the embedder that uses it.
_BUNDLED_RELATIVE = Path("embeddings", "data", "all-MiniLM-L6-v2", "tokenizer.json")


def bundled_tokenizer_path() -> Path:
    """Path of the all-MiniLM-L6-v2 ``tokenizer.json`` shipped inside Parley (not verified)."""
    return Path(__file__).resolve().parent.parent / _BUNDLED_RELATIVE


def load_bundled_tokenizer() -> Tokenizer:
    """A fresh ``Tokenizer`` from the bundled file, after checking its sha256.

    The checked bytes are the bytes loaded (no second read). Raises ``ProviderUnavailable``
    when the file is missing and ``ConfigurationError`` when its checksum does not match.
    """
    path = bundled_tokenizer_path()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProviderUnavailable(
            f"bundled tokenizer is missing ({path}): the Parley installation is incomplete"
        ) from exc
    return _from_bytes(data, expected_sha256=BUNDLED_TOKENIZER_SHA256, origin=path)


def _from_bytes(data: bytes, *, expected_sha256: str, origin: Path) -> Tokenizer:
    """A ``Tokenizer`` from ``tokenizer.json`` bytes whose sha256 must match."""
    from tokenizers import Tokenizer  # imported lazily: only needed when counting or embedding

    actual = hashlib.sha256(data).hexdigest()
    if actual != expected_sha256:
        raise ConfigurationError(
            f"tokenizer file {origin} has sha256 {actual}, expected {expected_sha256}: "
            "it was altered or replaced; reinstall Parley"
        )
    try:
        return Tokenizer.from_str(data.decode("utf-8"))
    except Exception as exc:  # tokenizers raises bare Exception subclasses
        raise ProviderUnavailable(f"cannot load tokenizer {origin}: {exc}") from exc


class HFTokenCounter:
    """Counts bert WordPiece tokens (the embedder's own tokenizer), without special tokens."""

    name = "minilm-wordpiece"

    def __init__(self, path: Path | None = None) -> None:
        """Remember which tokenizer to use (default: the bundled one); loaded on first use."""
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
        tokenizer = load_bundled_tokenizer() if self._path is None else _from_file(self._path)
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


def _from_file(path: Path) -> Tokenizer:
    """A caller-chosen tokenizer file: trusted as given, so no checksum."""
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises bare Exception subclasses
        raise ProviderUnavailable(f"cannot load tokenizer {path}: {exc}") from exc
