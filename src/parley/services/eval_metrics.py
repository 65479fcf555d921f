"""Pure ranking metrics for retrieval evaluation, at document level.

A ranked list here is a list of document ids (sources), best first, without repeats:
``document_ranking`` turns a ranked list of chunks' sources into one, so a document's rank
is the best rank of any of its chunks. Judgments (``qrels``) map a document id to a graded
relevance ≥ 0; only grades above 0 count as relevant.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence


def document_ranking(sources: Iterable[str]) -> list[str]:
    """Sources in order of first appearance: each document at the best rank of its chunks."""
    return list(dict.fromkeys(sources))


def _relevant(qrels: Mapping[str, int]) -> set[str]:
    return {doc for doc, grade in qrels.items() if grade > 0}


def ndcg_at_k(ranking: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    """Normalized discounted cumulative gain at ``k``: gain = grade, discount = log2(rank + 1).

    The ideal ranking orders the judged grades best first; with no relevant document the
    value is 0 (callers leave such queries out rather than average a meaningless 0).
    """
    dcg = sum(qrels.get(doc, 0) / math.log2(rank + 1) for rank, doc in enumerate(ranking[:k], 1))
    ideal_grades = sorted((g for g in qrels.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal_grades, 1))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranking: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    """Share of the relevant documents found in the top ``k`` (0 when none is relevant)."""
    relevant = _relevant(qrels)
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def reciprocal_rank_at_k(ranking: Sequence[str], qrels: Mapping[str, int], k: int) -> float:
    """1 / rank of the first relevant document in the top ``k``; 0 if there is none."""
    relevant = _relevant(qrels)
    return next((1 / rank for rank, doc in enumerate(ranking[:k], 1) if doc in relevant), 0.0)


def flatten(text: str) -> str:
    """Whitespace collapsed to single spaces and case folded, for containment checks."""
    return " ".join(text.split()).casefold()


def span_found(span: str, texts: Iterable[str]) -> bool:
    """Whether ``span`` occurs in any of ``texts``, ignoring case and whitespace layout."""
    needle = flatten(span)
    return any(needle in flatten(text) for text in texts)


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        return 0.0
    ordered = sorted(values)
    position = (len(ordered) - 1) * p / 100
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def mean(values: Sequence[float]) -> float | None:
    """Arithmetic mean, or None for no values (an undefined metric, not a zero)."""
    return sum(values) / len(values) if values else None
