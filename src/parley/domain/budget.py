"""One token budget shared by chat history and retrieved context."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from parley.domain.chat import HistoryMessage
from parley.domain.retrieval import RetrievedChunk


@dataclass(slots=True, frozen=True)
class BudgetPlan:
    """What fits: history (oldest first) and context chunks (best first)."""

    history: list[HistoryMessage]
    chunks: list[RetrievedChunk]
    history_tokens: int
    context_tokens: int


def plan_budget(
    *,
    history: Sequence[HistoryMessage],
    chunks: Sequence[RetrievedChunk],
    budget: int,
    history_share: float,
) -> BudgetPlan:
    """Split ``budget`` tokens between recent history and ranked chunks in a single pass.

    History may take up to ``history_share`` of the budget, newest messages first (a turn is
    never cut in half: a message that does not fit stops the walk). Whatever history leaves
    unused goes to context; chunks are taken best first, skipping any that would overflow so
    a long chunk does not block shorter, lower-ranked ones. Token counts are precomputed at
    write time, so nothing is re-tokenised here.
    """
    history_cap = int(budget * history_share)
    kept_history: list[HistoryMessage] = []
    used_history = 0
    for message in reversed(history):
        if used_history + message.token_count > history_cap:
            break
        kept_history.append(message)
        used_history += message.token_count
    kept_history.reverse()

    remaining = budget - used_history
    kept_chunks: list[RetrievedChunk] = []
    used_context = 0
    for chunk in chunks:
        if used_context + chunk.token_count <= remaining:
            kept_chunks.append(chunk)
            used_context += chunk.token_count
    return BudgetPlan(kept_history, kept_chunks, used_history, used_context)
