"""``ApproxTokenCounter``: a dependency-free estimate (words plus punctuation marks)."""

from __future__ import annotations

import re
from collections.abc import Sequence

# A word (letters/digits/underscore run) or any single non-space, non-word character:
# close to what a WordPiece pre-tokenizer splits on, minus sub-word pieces.
_TOKEN = re.compile(r"\w+|[^\w\s]")


class ApproxTokenCounter:
    """Counts regex words and punctuation; used in tests and when no tokenizer is installed."""

    name = "approx"

    def count(self, text: str) -> int:
        """Approximate tokens in ``text``."""
        return sum(1 for _ in _TOKEN.finditer(text))

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Approximate tokens in each text."""
        return [self.count(text) for text in texts]
