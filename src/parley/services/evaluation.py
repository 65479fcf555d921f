"""Retrieval evaluation: a labelled question → passage set (``examples/questions.json``)
or a BEIR-format set (see ``parley.services.beir``) scored at document level.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from parley.domain.retrieval import SearchQuery
from parley.services.beir import UNANSWERABLE, BeirQuery, BeirSet
from parley.services.eval_metrics import (
    document_ranking,
    mean,
    ndcg_at_k,
    percentile,
    recall_at_k,
    reciprocal_rank_at_k,
    span_found,
)
from parley.services.retrieval import RetrievalService


@dataclass(slots=True, frozen=True)
class EvalCase:
    """One labelled question: the answer passage contains ``phrase`` in ``source``."""

    question: str
    source: str
    phrase: str

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> EvalCase:
        """Read the ``questions.json`` shape."""
        return cls(str(raw["question"]), str(raw["expected_file"]), str(raw["expected_phrase"]))


@dataclass(slots=True, frozen=True)
class EvalReport:
    """Hit rate at k, mean reciprocal rank, and the rank found for each case (None = miss)."""

    k: int
    ranks: list[int | None]
    cases: list[EvalCase]

    @property
    def hit_rate(self) -> float:
        """Share of cases whose passage is in the top k."""
        return sum(r is not None for r in self.ranks) / len(self.ranks) if self.ranks else 0.0

    @property
    def mrr(self) -> float:
        """Mean of 1/rank (0 for a miss)."""
        return sum(1 / r for r in self.ranks if r) / len(self.ranks) if self.ranks else 0.0


def _flat(text: str) -> str:
    return " ".join(text.split())


async def evaluate_retrieval(
    retrieval: RetrievalService, *, collection_ids: list[str], cases: Sequence[EvalCase], k: int
) -> EvalReport:
    """Search each question and find the rank of its labelled passage."""
    ranks: list[int | None] = []
    for case in cases:
        hits = await retrieval.search(
            SearchQuery(text=case.question, collection_ids=collection_ids, top_k=k)
        )
        phrase = _flat(case.phrase)
        ranks.append(
            next(
                (
                    i
                    for i, hit in enumerate(hits, start=1)
                    if hit.source == case.source and phrase in _flat(hit.text)
                ),
                None,
            )
        )
    return EvalReport(k=k, ranks=ranks, cases=list(cases))


@dataclass(slots=True, frozen=True)
class QueryOutcome:
    """What one BEIR query retrieved: documents best first, span found, search latency."""

    query: BeirQuery
    ranking: list[str]
    span_hit: bool | None
    latency_ms: float


@dataclass(slots=True, frozen=True)
class GroupRow:
    """Metrics of a group of queries; a metric is None where no query defines it."""

    name: str
    queries: int
    judged: int
    ndcg: float | None
    recall_k: float | None
    recall_depth: float | None
    mrr: float | None
    with_span: int
    span_rate: float | None
    p50_ms: float
    p95_ms: float

    def to_dict(self, *, k: int, depth: int) -> dict[str, Any]:
        """JSON-ready form, metric names carrying their cut-offs."""
        return {
            "group": self.name,
            "queries": self.queries,
            "judged": self.judged,
            f"ndcg@{k}": self.ndcg,
            f"recall@{k}": self.recall_k,
            f"recall@{depth}": self.recall_depth,
            f"mrr@{k}": self.mrr,
            "with_answer_span": self.with_span,
            f"answer_span@{k}": self.span_rate,
            "latency_p50_ms": round(self.p50_ms, 3),
            "latency_p95_ms": round(self.p95_ms, 3),
        }


@dataclass(slots=True, frozen=True)
class BeirReport:
    """Per-group rows (``follow-up`` = turn > 1, evaluated as sent) and the overall row."""

    k: int
    depth: int
    outcomes: list[QueryOutcome]
    groups: list[GroupRow]
    overall: GroupRow

    @property
    def unanswerable(self) -> int:
        """Queries labelled unanswerable: retrieval metrics are undefined for them."""
        return sum(o.query.unanswerable for o in self.outcomes)

    @property
    def unjudged(self) -> int:
        """Answerable queries without any relevant judgment (left out of the metrics)."""
        return self.overall.queries - self.overall.judged - self.unanswerable

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form of every number the CLI prints."""
        return {
            "k": self.k,
            "depth": self.depth,
            "level": "document",
            "overall": self.overall.to_dict(k=self.k, depth=self.depth),
            "groups": [g.to_dict(k=self.k, depth=self.depth) for g in self.groups],
            "unanswerable": self.unanswerable,
            "unjudged": self.unjudged,
            "abstention": None,
            "notes": [
                "abstention: not measured by retrieval-only eval",
                "follow-up: turns after the first are searched as sent, without history",
            ],
        }


def summarize(
    name: str,
    outcomes: Sequence[QueryOutcome],
    qrels: dict[str, dict[str, int]],
    *,
    k: int,
    depth: int,
) -> GroupRow:
    """One report row: retrieval metrics over judged answerable queries, latency over all."""
    judged = [
        (o, qrels[o.query.id])
        for o in outcomes
        if not o.query.unanswerable and any(g > 0 for g in qrels.get(o.query.id, {}).values())
    ]
    spans = [o.span_hit for o in outcomes if o.span_hit is not None]
    latencies = [o.latency_ms for o in outcomes]
    return GroupRow(
        name=name,
        queries=len(outcomes),
        judged=len(judged),
        ndcg=mean([ndcg_at_k(o.ranking, q, k) for o, q in judged]),
        recall_k=mean([recall_at_k(o.ranking, q, k) for o, q in judged]),
        recall_depth=mean([recall_at_k(o.ranking, q, depth) for o, q in judged]),
        mrr=mean([reciprocal_rank_at_k(o.ranking, q, k) for o, q in judged]),
        with_span=len(spans),
        span_rate=mean([float(hit) for hit in spans]),
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
    )


async def evaluate_beir(
    retrieval: RetrievalService,
    *,
    collection_ids: list[str],
    dataset: BeirSet,
    k: int = 10,
    depth: int = 50,
) -> BeirReport:
    """Search every query once (``depth`` chunks) and score the documents it ranks.

    Retrieval only: a follow-up turn is searched as written, with no conversation history,
    so conversation-aware retrieval will show up as a change in the ``follow-up`` row.
    """
    depth = max(depth, k)
    outcomes: list[QueryOutcome] = []
    for query in dataset.queries:
        started = time.perf_counter()
        hits = await retrieval.search(
            SearchQuery(text=query.text, collection_ids=collection_ids, top_k=depth)
        )
        latency_ms = (time.perf_counter() - started) * 1000
        span_hit = (
            span_found(query.answer_span, (h.text for h in hits[:k]))
            if query.answer_span and not query.unanswerable
            else None
        )
        ranking = document_ranking(h.source for h in hits)
        outcomes.append(QueryOutcome(query, ranking, span_hit, latency_ms))
    names = list(dict.fromkeys(o.query.group for o in outcomes))
    # Unanswerable last: its row has only a count and latencies.
    names.sort(key=lambda n: n == UNANSWERABLE)
    groups = [
        summarize(n, [o for o in outcomes if o.query.group == n], dataset.qrels, k=k, depth=depth)
        for n in names
    ]
    overall = summarize("overall", outcomes, dataset.qrels, k=k, depth=depth)
    return BeirReport(k=k, depth=depth, outcomes=outcomes, groups=groups, overall=overall)
