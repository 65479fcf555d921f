"""A deterministic ``LLM`` for tests and benchmarks: no network, predictable text and usage."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from parley.domain.chat import Completion, StreamDelta, Usage
from parley.providers.llm.base import GenerationRequest

NOT_FOUND = "I could not find this in the documents."
_EXCERPT_WORDS = 12
_REWRITE_MARKER = "standalone question"


class FakeLLM:
    """Replies with a fixed or source-derived text and records every request it gets."""

    name = "fake"
    model = "fake"
    generative = True

    def __init__(
        self,
        *,
        reply: str | None = None,
        token_delay_s: float = 0.0,
        fail_with: Exception | None = None,
        rewrite_reply: str | None = None,
    ) -> None:
        """``reply`` overrides the default answer; ``rewrite_reply`` the rewrite answer
        (default: the question unchanged); ``fail_with`` is raised by every call."""
        self.reply = reply
        self.rewrite_reply = rewrite_reply
        self.token_delay_s = token_delay_s
        self.fail_with = fail_with
        self.requests: list[GenerationRequest] = []
        self.closed = False

    async def complete(self, request: GenerationRequest) -> Completion:
        """Return the whole reply (after ``token_delay_s`` per word, if set)."""
        text = self._begin(request)
        if self.token_delay_s:
            await asyncio.sleep(self.token_delay_s * len(_pieces(text)))
        return Completion(text=text, usage=_usage(request, text), model=self.model)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamDelta]:
        """Yield the reply word by word (``token_delay_s`` apart), then one usage delta."""
        text = self._begin(request)
        for piece in _pieces(text):
            if self.token_delay_s:
                await asyncio.sleep(self.token_delay_s)
            yield StreamDelta(text=piece)
        yield StreamDelta(usage=_usage(request, text), finish_reason="stop")

    async def aclose(self) -> None:
        """Mark the fake closed (tests may assert it)."""
        self.closed = True

    def _begin(self, request: GenerationRequest) -> str:
        self.requests.append(request)
        if self.fail_with is not None:
            raise self.fail_with
        if _is_rewrite(request):
            if self.rewrite_reply is not None:
                return self.rewrite_reply
            return request.question or _last_user_message(request)
        if self.reply is not None:
            return self.reply
        if not request.sources:
            return NOT_FOUND
        words = request.sources[0].text.split()[:_EXCERPT_WORDS]
        excerpt = " ".join(words).rstrip(".,;:!?")
        return f"Based on the documents, {excerpt} [1]."


def _is_rewrite(request: GenerationRequest) -> bool:
    """A rewrite prompt has no sources and a system message asking for a standalone question."""
    return not request.sources and any(
        m.role == "system" and _REWRITE_MARKER in m.content.lower() for m in request.messages
    )


def _last_user_message(request: GenerationRequest) -> str:
    for message in reversed(request.messages):
        if message.role == "user":
            return message.content
    return ""


def _pieces(text: str) -> list[str]:
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


def _usage(request: GenerationRequest, text: str) -> Usage:
    prompt_words = sum(len(m.content.split()) for m in request.messages)
    return Usage(input_tokens=prompt_words, output_tokens=len(text.split()))
