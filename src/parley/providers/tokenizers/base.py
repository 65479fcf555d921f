"""The ``TokenCounter`` port: how many tokens a text costs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


@runtime_checkable
class TokenCounter(Protocol):
    """Counts tokens; used for chunk sizes and the chat token budget."""

    name: str

    def count(self, text: str) -> int:
        """Tokens in ``text`` (no special tokens)."""
        ...

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Tokens in each text, batched where the backend allows it."""
        ...
