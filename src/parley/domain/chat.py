"""Chat turns, prompts and token usage."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["system", "user", "assistant"]


@dataclass(slots=True, frozen=True)
class ChatMessage:
    """One message as given to a model."""

    role: Role
    content: str


@dataclass(slots=True, frozen=True)
class Usage:
    """Token accounting of one generation."""

    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


@dataclass(slots=True, frozen=True)
class Completion:
    """A finished, non-streamed generation."""

    text: str
    usage: Usage
    model: str
    finish_reason: str = "stop"


@dataclass(slots=True, frozen=True)
class StreamDelta:
    """A piece of a streamed generation; the last one carries ``usage``."""

    text: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None


@dataclass(slots=True, frozen=True)
class HistoryMessage:
    """A stored message as used to build the next prompt."""

    role: Role
    content: str
    token_count: int
