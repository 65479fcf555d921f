"""Search, sessions and messages."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class SearchRequest(BaseModel):
    """Body of ``POST /v1/search``."""

    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=2000)
    collection_ids: list[str] = Field(
        min_length=1, max_length=20, description="collection ids or names"
    )
    top_k: int = Field(default=6, ge=1, le=50)
    filters: dict[str, Any] = Field(default_factory=dict, max_length=20)


class SearchHit(BaseModel):
    """One search result."""

    chunk_id: int
    collection_id: str
    document_id: str
    title: str
    source: str
    text: str
    page: int | None
    section: str | None
    score: float
    dense_rank: int | None
    keyword_rank: int | None
    metadata: dict[str, Any]


class SearchResponse(BaseModel):
    """Results of ``POST /v1/search``, best first."""

    results: list[SearchHit]


class SessionCreate(BaseModel):
    """Body of ``POST /v1/sessions``."""

    model_config = ConfigDict(extra="forbid")

    collection_ids: list[str] = Field(
        min_length=1, max_length=20, description="collection ids or names (stored as ids)"
    )
    title: str | None = Field(default=None, max_length=200)


class SessionRead(BaseModel):
    """A chat session."""

    id: str
    title: str | None
    collection_ids: list[str]
    message_count: int
    created_at: datetime


class SessionList(BaseModel):
    """A page of sessions, newest first."""

    items: list[SessionRead]
    next_cursor: str | None


class MessageCreate(BaseModel):
    """Body of ``POST /v1/sessions/{id}/messages``."""

    model_config = ConfigDict(extra="forbid")

    # Hard ceiling only; the configured PARLEY_LIMITS__MAX_MESSAGE_CHARS is enforced by the
    # chat service with a clear message.
    content: str = Field(min_length=1, max_length=100_000)
    top_k: int | None = Field(default=None, ge=1, le=50)
    stream: bool = False


class MessageRetry(BaseModel):
    """Body (optional) of ``POST /v1/sessions/{id}/messages/{message_id}/retry``."""

    model_config = ConfigDict(extra="forbid")

    top_k: int | None = Field(default=None, ge=1, le=50)
    stream: bool = False


class SourceRead(BaseModel):
    """A numbered source: ``[index]`` in the answer refers to it."""

    index: int
    chunk_id: int
    document_id: str
    collection_id: str
    title: str
    source: str
    page: int | None
    section: str | None
    snippet: str
    score: float


class UsageRead(BaseModel):
    """Token usage of a turn."""

    input_tokens: int
    output_tokens: int
    total_tokens: int


class MessageRead(BaseModel):
    """A stored message; assistant messages carry sources and usage.

    A question (``role: user``) is stored as its turn starts. Its ``status`` is ``answered``,
    ``failed`` (``error`` holds the problem code of its last generation) or ``pending``
    (being answered, or its server stopped mid-turn); failed and pending questions can be
    retried with ``POST …/messages/{id}/retry``. An answer names its question in ``reply_to``.
    """

    id: int
    session_id: str
    role: str
    content: str
    created_at: datetime
    status: Literal["answered", "failed", "pending"] | None = None
    error: str | None = None
    reply_to: int | None = None
    sources: list[SourceRead] | None = None
    usage: UsageRead | None = None
    model: str | None = None
    finish_reason: str | None = None
    latency_ms: float | None = None
    timings: dict[str, float] | None = None


class MessageList(BaseModel):
    """A page of messages, oldest first."""

    items: list[MessageRead]
    next_cursor: str | None
