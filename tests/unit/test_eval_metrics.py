"""Document-level ranking metrics, checked against values computed by hand."""

from __future__ import annotations

import math

import pytest

from parley.services.beir import BeirQuery
from parley.services.eval_metrics import (
    document_ranking,
    mean,
    ndcg_at_k,
    percentile,
    recall_at_k,
    reciprocal_rank_at_k,
    span_found,
)
from parley.services.evaluation import QueryOutcome, summarize

QRELS = {"b": 2, "c": 1, "d": 1, "z": 0}
RANKING = ["a", "b", "c"]


def test_a_document_ranks_at_its_best_chunk() -> None:
    assert document_ranking(["x", "y", "x", "z", "y"]) == ["x", "y", "z"]


def test_ndcg_of_a_known_ranking() -> None:
    # DCG = 0/log2(2) + 2/log2(3) + 1/log2(4); ideal = 2/log2(2) + 1/log2(3) + 1/log2(4)
    dcg = 2 / math.log2(3) + 0.5
    ideal = 2 + 1 / math.log2(3) + 0.5
    assert ndcg_at_k(RANKING, QRELS, 3) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(RANKING, QRELS, 3) == pytest.approx(0.56273, abs=1e-5)


def test_ndcg_cut_off_and_perfect_ranking() -> None:
    assert ndcg_at_k(RANKING, QRELS, 1) == 0.0  # "a" is not relevant
    assert ndcg_at_k(["b", "c", "d"], QRELS, 10) == pytest.approx(1.0)
    assert ndcg_at_k(["b"], {"b": 0}, 10) == 0.0  # nothing relevant: no ideal


def test_recall_counts_grades_above_zero() -> None:
    assert recall_at_k(RANKING, QRELS, 2) == pytest.approx(1 / 3)
    assert recall_at_k(RANKING, QRELS, 3) == pytest.approx(2 / 3)
    assert recall_at_k(["z"], {"z": 0}, 10) == 0.0


def test_reciprocal_rank_within_the_cut_off() -> None:
    assert reciprocal_rank_at_k(RANKING, QRELS, 3) == 0.5
    assert reciprocal_rank_at_k(RANKING, QRELS, 1) == 0.0


def test_span_is_found_ignoring_case_and_whitespace() -> None:
    assert span_found("Heating  ELEMENT", ["uses a heating\nelement at the base"])
    assert not span_found("heating element", ["a heater", "an element"])


def test_percentile_and_mean() -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == pytest.approx(2.5)
    assert percentile([1.0, 2.0, 3.0, 4.0], 95) == pytest.approx(3.85)
    assert percentile([], 50) == 0.0
    assert mean([]) is None
    assert mean([1.0, 0.0]) == 0.5


def _outcome(query: BeirQuery, ranking: list[str], span: bool | None = None) -> QueryOutcome:
    return QueryOutcome(query, ranking, span, latency_ms=float(len(ranking)))


def test_summary_leaves_unanswerable_and_unjudged_queries_out() -> None:
    outcomes = [
        _outcome(BeirQuery("q1", "x"), ["b", "c"], span=True),
        _outcome(BeirQuery("q2", "y"), ["a", "d"], span=False),
        _outcome(BeirQuery("q3", "z", unanswerable=True), ["b"]),
        _outcome(BeirQuery("q4", "w"), ["a"]),  # no judgments
    ]
    qrels = {"q1": {"b": 1}, "q2": {"d": 1}, "q3": {"b": 1}}
    row = summarize("overall", outcomes, qrels, k=1, depth=2)
    assert (row.queries, row.judged, row.with_span) == (4, 2, 2)
    assert row.ndcg == pytest.approx(0.5)  # q1 = 1, q2 = 0 at k=1
    assert row.recall_k == pytest.approx(0.5)
    assert row.recall_depth == pytest.approx(1.0)
    assert row.mrr == pytest.approx(0.5)
    assert row.span_rate == pytest.approx(0.5)
    assert row.p50_ms == pytest.approx(1.5)
