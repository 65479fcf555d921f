"""The ``LLM`` port: complete or stream an answer to a prompt."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from parley.domain.chat import ChatMessage, Completion, StreamDelta
from parley.domain.retrieval import RetrievedChunk


@dataclass(slots=True, frozen=True)
class GenerationRequest:
    """Everything a generator may use.

    Model-backed LLMs read ``messages`` (the rendered prompt). The extractive answerer reads
    ``question`` and ``sources`` (numbered from 1 in this order, as in the prompt).
    """

    messages: Sequence[ChatMessage]
    question: str = ""
    sources: Sequence[RetrievedChunk] = field(default_factory=tuple)
    max_tokens: int = 800
    temperature: float = 0.2
    stop: Sequence[str] = field(default_factory=tuple)
    deadline: float | None = None
    """Event-loop time (``loop.time()``) by which the call must be over, retries included;
    adapters end it earlier still if their own ``timeout_s`` from the start comes first.
    A chat turn sets one deadline for its rewrite and its answer."""


@runtime_checkable
class LLM(Protocol):
    """A text generator. Adapters translate vendor errors into ``ProviderError`` subclasses.

    An answer is never empty: an adapter raises ``ProviderEmptyResponse`` rather than return
    or stream no text, and ``ProviderStreamCut`` when a stream ends before its final event.
    """

    name: str
    """Provider label, e.g. ``openai`` or ``extractive``."""
    model: str
    """Model id reported with usage."""
    generative: bool
    """False for answerers that cannot follow free-form instructions (query rewriting)."""

    async def complete(self, request: GenerationRequest) -> Completion:
        """Generate the whole answer."""
        ...

    def stream(self, request: GenerationRequest) -> AsyncIterator[StreamDelta]:
        """Yield the answer as it is generated; the last delta carries usage."""
        ...

    async def aclose(self) -> None:
        """Release pooled connections."""
        ...
