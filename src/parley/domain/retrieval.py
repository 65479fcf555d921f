"""Search results and citations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class RetrievedChunk:
    """A chunk returned by search, with its fused score and per-retriever ranks."""

    chunk_id: int
    collection_id: str
    document_id: str
    document_title: str
    source: str
    text: str
    token_count: int
    position: int
    meta: dict[str, Any]
    score: float = 0.0
    dense_rank: int | None = None
    keyword_rank: int | None = None

    @property
    def page(self) -> int | None:
        """1-based page number, when the source had pages."""
        page = self.meta.get("page")
        return int(page) if page is not None else None

    @property
    def section(self) -> str | None:
        """Heading path of the chunk, when the source had headings."""
        section = self.meta.get("section")
        return str(section) if section else None


@dataclass(slots=True, frozen=True)
class Citation:
    """A numbered source of an answer: ``[n]`` in the text refers to ``index`` n."""

    index: int
    chunk_id: int
    document_id: str
    collection_id: str
    title: str
    source: str
    snippet: str
    score: float
    page: int | None = None
    section: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as stored with the message and returned by the API."""
        return {
            "index": self.index,
            "chunk_id": self.chunk_id,
            "document_id": self.document_id,
            "collection_id": self.collection_id,
            "title": self.title,
            "source": self.source,
            "page": self.page,
            "section": self.section,
            "snippet": self.snippet,
            "score": round(self.score, 6),
        }


@dataclass(slots=True, frozen=True)
class SearchQuery:
    """What to search for and where."""

    text: str
    collection_ids: list[str]
    top_k: int
    filters: dict[str, Any] = field(default_factory=dict)


def reciprocal_rank_fusion(rankings: list[list[int]], *, k: int = 60) -> list[tuple[int, float]]:
    """Fuse ranked id lists into one ranking by summing ``1 / (k + rank)`` (rank from 1).

    Items found by several retrievers rise; ties keep first-seen order so results are stable.
    """
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda kv: kv[1], reverse=True)
