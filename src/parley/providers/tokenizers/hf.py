"""``HFTokenCounter``: exact WordPiece counts from the tokenizer bundled with the local embedder.

The all-MiniLM-L6-v2 ``tokenizer.json`` ships inside Parley (see the NOTICE beside it) and
is checked against a pinned sha256 every time it is loaded, so an altered or mismatched file
can never silently change token counts or embeddings.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from parley.errors import ConfigurationError, ProviderUnavailable

if TYPE_CHECKING:
    from tokenizers import Tokenizer

BUNDLED_TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
# Relative to the parley.providers package: the file lives with the embedder that uses it.
_BUNDLED_RELATIVE = Path("embeddings", "data", "all-MiniLM-L6-v2", "tokenizer.json")
# Encodings cost ~100 bytes per token: a batch is capped in characters and texts, and a text
# longer than a piece is counted piece by piece, cut at whitespace (where WordPiece splits
# anyway, so the sum is exact). One 24 MB string encoded at once took 5.9 GB.
_BATCH_CHARS = 256 * 1024
_BATCH_TEXTS = 4096
_PIECE_CHARS = 64 * 1024
_LAST_SPACE = re.compile(r"\s\S*\Z")


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

    def __getstate__(self) -> dict[str, Any]:
        """Pickled as its path only (sent to parser processes); each loads its own copy."""
        return {"path": self._path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild unloaded, as ``__init__`` would."""
        self.__init__(state["path"])  # type: ignore[misc]

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
        return self.count_many([text])[0]

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Tokens in each text, encoded in bounded batches (long texts piece by piece)."""
        if not texts:
            return []
        owners: list[int] = []
        pieces: list[str] = []
        for index, text in enumerate(texts):
            for piece in _pieces(text):
                owners.append(index)
                pieces.append(piece)
        counts = [0] * len(texts)
        tokenizer = self._load()
        for start, end in _batches(pieces):
            encodings = tokenizer.encode_batch(pieces[start:end], add_special_tokens=False)
            for owner, encoding in zip(owners[start:end], encodings, strict=True):
                counts[owner] += len(encoding.ids)
        return counts


def _pieces(text: str) -> Iterator[str]:
    """``text`` in runs of at most ``_PIECE_CHARS``, each ending at whitespace when possible."""
    start = 0
    while len(text) - start > _PIECE_CHARS:
        end = start + _PIECE_CHARS
        space = _LAST_SPACE.search(text, start, end)
        cut = space.start() + 1 if space is not None and space.start() > start else end
        yield text[start:cut]
        start = cut
    yield text[start:]


def _batches(pieces: list[str]) -> Iterator[tuple[int, int]]:
    """(start, end) ranges of ``pieces`` within the batch limits."""
    start = size = 0
    for index, piece in enumerate(pieces):
        if index > start and (size + len(piece) > _BATCH_CHARS or index - start >= _BATCH_TEXTS):
            yield start, index
            start, size = index, 0
        size += len(piece)
    if start < len(pieces):
        yield start, len(pieces)


def _from_file(path: Path) -> Tokenizer:
    """A caller-chosen tokenizer file: trusted as given, so no checksum."""
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises bare Exception subclasses
        raise ProviderUnavailable(f"cannot load tokenizer {path}: {exc}") from exc
