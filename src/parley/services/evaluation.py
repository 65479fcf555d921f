"""Retrieval evaluation on a labelled question → passage set (``examples/questions.json``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from parley.domain.retrieval import SearchQuery
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
