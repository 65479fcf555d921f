"""Pure domain rules: rank fusion and the shared token budget."""

from __future__ import annotations

from parley.domain.budget import plan_budget
from parley.domain.chat import HistoryMessage
from parley.domain.retrieval import RetrievedChunk, reciprocal_rank_fusion


def chunk(cid: int, tokens: int) -> RetrievedChunk:
    return RetrievedChunk(
        chunk_id=cid,
        collection_id="c",
        document_id="d",
        document_title="t",
        source="s",
        text="x",
        token_count=tokens,
        position=0,
        meta={},
    )


def msg(role: str, tokens: int) -> HistoryMessage:
    return HistoryMessage(role=role, content=f"{role}-{tokens}", token_count=tokens)  # type: ignore[arg-type]


def test_rrf_rewards_agreement_and_is_stable() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [3, 4, 1]], k=60)
    order = [item for item, _ in fused]
    assert order[:2] == [1, 3]  # found by both retrievers
    assert set(order) == {1, 2, 3, 4}
    assert fused[0][1] == 1 / 61 + 1 / 63
    # ties keep first-seen order
    assert [i for i, _ in reciprocal_rank_fusion([[7], [8]], k=60)] == [7, 8]
    assert reciprocal_rank_fusion([[], []]) == []


def test_budget_keeps_newest_history_within_its_share() -> None:
    history = [msg("user", 50), msg("assistant", 50), msg("user", 40), msg("assistant", 40)]
    plan = plan_budget(history=history, chunks=[], budget=300, history_share=0.3)
    # cap 90: the newest two (80 tokens) fit, the next one would overflow
    assert [m.content for m in plan.history] == ["user-40", "assistant-40"]
    assert plan.history_tokens == 80


def test_unused_history_budget_goes_to_context_and_long_chunks_are_skipped() -> None:
    chunks = [chunk(1, 100), chunk(2, 500), chunk(3, 100), chunk(4, 50)]
    plan = plan_budget(history=[msg("user", 20)], chunks=chunks, budget=300, history_share=0.5)
    assert plan.history_tokens == 20
    # 280 left: chunk 2 (500) is skipped, lower-ranked shorter ones still fit, rank order kept
    assert [c.chunk_id for c in plan.chunks] == [1, 3, 4]
    assert plan.context_tokens == 250
    assert plan.history_tokens + plan.context_tokens <= 300


def test_empty_inputs() -> None:
    plan = plan_budget(history=[], chunks=[], budget=100, history_share=0.3)
    assert plan.history == [] and plan.chunks == [] and plan.context_tokens == 0
