"""The values a chat turn passes between its stages, and how stored messages are shown."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from parley.db.models import MessageRow
from parley.domain.chat import Usage
from parley.domain.retrieval import Citation, RetrievedChunk
from parley.providers.llm.base import LLM, GenerationRequest
from parley.services.hot_turns import PendingWrite

_SNIPPET_CHARS = 300

QuestionStatus = Literal["answered", "failed", "pending"]


@dataclass(slots=True)
class PreparedTurn:
    """Everything decided before generation starts (errors surface before any streaming)."""

    session_id: str
    content: str
    actor_id: str | None
    llm: LLM
    request: GenerationRequest
    sources: list[RetrievedChunk]
    started: float
    retrieval_ms: float
    llm_ms: float = 0.0
    rewritten_query: str | None = None
    pending: PendingWrite | None = None
    persisted: bool = False
    rewrite_usage: Usage = field(default_factory=Usage)
    question_id: int | None = None
    """The stored question: given for a retry, else known once generation has started."""
    question: asyncio.Future[int] | None = None
    """Storing the question, started with generation so the two overlap."""


@dataclass(slots=True)
class TurnResult:
    """A finished turn as stored: the assistant message with citations and usage."""

    session_id: str
    user_message_id: int
    message_id: int
    content: str
    citations: list[Citation]
    usage: Usage
    model: str
    finish_reason: str
    created_at: datetime
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The assistant message as returned by the API."""
        return {
            "id": self.message_id,
            "session_id": self.session_id,
            "role": "assistant",
            "content": self.content,
            "reply_to": self.user_message_id,
            "sources": [c.to_dict() for c in self.citations],
            "usage": {
                "input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens,
                "total_tokens": self.usage.total_tokens,
            },
            "model": self.model,
            "finish_reason": self.finish_reason,
            "created_at": self.created_at.isoformat(),
            "timings": self.timings,
        }


def citations_for(sources: list[RetrievedChunk]) -> list[Citation]:
    """Number the sources given to the model from 1, as in the prompt."""
    return [
        Citation(
            index=i,
            chunk_id=s.chunk_id,
            document_id=s.document_id,
            collection_id=s.collection_id,
            title=s.document_title,
            source=s.source,
            snippet=s.text[:_SNIPPET_CHARS],
            score=s.score,
            page=s.page,
            section=s.section,
        )
        for i, s in enumerate(sources, start=1)
    ]


def question_status(row: MessageRow) -> QuestionStatus:
    """A question is answered, failed (its last generation did), or pending (generating, or
    its server stopped mid-turn); the last two can be retried."""
    if row.answered:
        return "answered"
    return "failed" if row.error_code else "pending"


def message_dict(row: MessageRow) -> dict[str, Any]:
    """A stored message as returned by the API (``row`` loaded with ``answered``)."""
    out: dict[str, Any] = {
        "id": row.id,
        "session_id": row.session_id,
        "role": row.role,
        "content": row.content,
        "created_at": row.created_at.isoformat(),
    }
    if row.role == "user":
        out["status"] = question_status(row)
        if out["status"] == "failed":
            out["error"] = row.error_code
    elif row.role == "assistant":
        out["reply_to"] = row.reply_to_id
        out["sources"] = row.sources or []
        out["usage"] = {
            "input_tokens": row.input_tokens,
            "output_tokens": row.output_tokens,
            "total_tokens": row.input_tokens + row.output_tokens,
        }
        out["model"] = row.model
        out["finish_reason"] = row.finish_reason
        out["latency_ms"] = row.latency_ms
    return out
