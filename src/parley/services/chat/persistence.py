"""Storing a turn: the question as generation starts, then its answer or why it failed.

The question is committed when generation starts, not with the answer: a server killed
mid-answer (or a provider failing) then loses no question, which stays visible as pending or
failed and can be retried. It costs one INSERT per turn, started together with the model
call so the two overlap instead of adding up; a streamed answer's first token waits for it,
so no client ever sees an answer to a question that is not stored. Nothing empty is stored
as an answer.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from parley.db.base import utcnow
from parley.domain.chat import HistoryMessage, Usage
from parley.errors import Conflict, NotFound, ParleyError, ProviderError
from parley.providers.tokenizers.base import TokenCounter
from parley.services.chat.turn import PreparedTurn, TurnResult, citations_for
from parley.services.hot_turns import HotTurns
from parley.services.quotas import QuotaService
from parley.services.uow import UnitOfWorkFactory

log = structlog.get_logger(__name__)


class TurnRecorder:
    """Writes a turn's messages: one statement for the question, one for the outcome."""

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        counter: TokenCounter,
        quotas: QuotaService,
        hot: HotTurns | None,
    ) -> None:
        self._uow = uow
        self._counter = counter
        self._quotas = quotas
        self._hot = hot

    def begin(self, turn: PreparedTurn) -> None:
        """Start storing the question (a retried one is stored already) without waiting.

        A task of its own: it completes even if the turn is cancelled (client gone), so the
        question stays, pending, for a retry.
        """
        if turn.question is not None:
            return
        if turn.question_id is not None:
            turn.question = asyncio.get_running_loop().create_future()
            turn.question.set_result(turn.question_id)
            return
        turn.question = asyncio.ensure_future(self._insert_question(turn))
        turn.question.add_done_callback(_log_if_failed)

    async def question_id(self, turn: PreparedTurn) -> int:
        """The stored question's id, once its insert has committed."""
        if turn.question is None:
            self.begin(turn)
        assert turn.question is not None
        # Shielded: a cancelled turn must not cancel the insert, which other paths await.
        turn.question_id = await asyncio.shield(turn.question)
        return turn.question_id

    async def finish(
        self, turn: PreparedTurn, answer: str, usage: Usage, model: str, finish: str
    ) -> TurnResult:
        """Store the answer to the turn's question, with its sources and usage."""
        question_id = await self.question_id(turn)
        citations = citations_for(turn.sources)
        t = time.perf_counter()
        now = utcnow()
        # The rewrite call is billed to the turn too, so quotas count every token spent.
        usage = Usage(
            input_tokens=usage.input_tokens + turn.rewrite_usage.input_tokens,
            output_tokens=usage.output_tokens + turn.rewrite_usage.output_tokens,
        )
        (answer_tokens,) = self._counter.count_many([answer])
        total_ms = (time.perf_counter() - turn.started) * 1000
        row = _message(
            turn,
            role="assistant",
            content=answer,
            token_count=answer_tokens,
            created_at=now,
            reply_to_id=question_id,
            sources=[c.to_dict() for c in citations],
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            latency_ms=round(total_ms, 3),
            model=model,
            finish_reason=finish,
        )
        async with self._uow(write=True) as tx:
            try:
                answer_id = await tx.sessions.add_message(row)
            except IntegrityError as exc:
                raise await self._refusal(turn.session_id, question_id) from exc
            await tx.commit()
        turn.persisted = True
        self._quotas.record(
            turn.actor_id, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens
        )
        if self._hot is not None and turn.pending is not None:
            (question_tokens,) = self._counter.count_many([turn.content])
            appended = [
                HistoryMessage(role="user", content=turn.content, token_count=question_tokens),
                HistoryMessage(role="assistant", content=answer, token_count=answer_tokens),
            ]
            await self._hot.write(turn.pending, session_id=turn.session_id, appended=appended)
        persist_ms = (time.perf_counter() - t) * 1000
        total_ms = (time.perf_counter() - turn.started) * 1000
        timings = {
            "retrieval_ms": round(turn.retrieval_ms, 3),
            "llm_ms": round(turn.llm_ms, 3),
            "persist_ms": round(persist_ms, 3),
            "total_ms": round(total_ms, 3),
            "overhead_ms": round(total_ms - turn.llm_ms, 3),
        }
        log.info("chat_turn", session_id=turn.session_id, message_id=answer_id, **timings)
        return TurnResult(
            session_id=turn.session_id,
            user_message_id=question_id,
            message_id=answer_id,
            content=answer,
            citations=citations,
            usage=usage,
            model=model,
            finish_reason=finish,
            created_at=now,
            timings=timings,
        )

    async def fail(self, turn: PreparedTurn, error: ProviderError) -> None:
        """Mark the turn's question failed with ``error``'s code, and name it in the error
        (``message_id``) so the client can retry it. Never raises: ``error`` is what counts."""
        try:
            question_id = await self.question_id(turn)
            async with self._uow(write=True) as tx:
                await tx.sessions.mark_failed(
                    question_id,
                    code=error.code,
                    input_tokens=turn.rewrite_usage.input_tokens,
                    output_tokens=turn.rewrite_usage.output_tokens,
                )
                await tx.commit()
        except (ParleyError, SQLAlchemyError) as exc:  # e.g. the session was deleted meanwhile
            log.warning("turn_failure_not_recorded", session_id=turn.session_id, error=str(exc))
            return
        error.extra["message_id"] = question_id
        self._quotas.record(
            turn.actor_id,
            input_tokens=turn.rewrite_usage.input_tokens,
            output_tokens=turn.rewrite_usage.output_tokens,
        )

    async def fail_early(
        self,
        *,
        session_id: str,
        actor_id: str | None,
        content: str,
        question_id: int | None,
        error: ProviderError,
    ) -> None:
        """A provider failed while the turn was prepared (rewrite, query embedding): store
        the question already marked failed (one statement), or mark the retried one."""
        try:
            async with self._uow(write=True) as tx:
                if question_id is None:
                    (tokens,) = self._counter.count_many([content])
                    row = _message_row(
                        session_id=session_id,
                        actor_id=actor_id,
                        role="user",
                        content=content,
                        token_count=tokens,
                        created_at=utcnow(),
                        error_code=error.code,
                    )
                    question_id = await tx.sessions.add_message(row)
                else:
                    await tx.sessions.mark_failed(question_id, code=error.code)
                await tx.commit()
        except SQLAlchemyError as exc:  # e.g. the session was deleted meanwhile
            log.warning("turn_failure_not_recorded", session_id=session_id, error=str(exc))
            return
        error.extra["message_id"] = question_id

    async def _insert_question(self, turn: PreparedTurn) -> int:
        (tokens,) = self._counter.count_many([turn.content])
        row = _message(
            turn, role="user", content=turn.content, token_count=tokens, created_at=utcnow()
        )
        async with self._uow(write=True) as tx:
            try:
                question_id = await tx.sessions.add_message(row)
            except IntegrityError as exc:  # the session was deleted during the turn
                raise NotFound(f"session {turn.session_id} not found") from exc
            await tx.commit()
        return question_id

    async def _refusal(self, session_id: str, question_id: int) -> ParleyError:
        """Why an answer could not be inserted: its session is gone, or (a retry raced
        another) its question has an answer already."""
        async with self._uow() as tx:
            exists = await tx.sessions.get(session_id) is not None
        if not exists:
            return NotFound(f"session {session_id} not found")
        return Conflict(f"message {question_id} was answered meanwhile")


def _message(turn: PreparedTurn, **values: Any) -> dict[str, Any]:
    return _message_row(session_id=turn.session_id, actor_id=turn.actor_id, **values)


def _message_row(*, session_id: str, actor_id: str | None, **values: Any) -> dict[str, Any]:
    """A full ``messages`` row: every column given, so each insert is the same statement."""
    row: dict[str, Any] = {
        "session_id": session_id,
        "owner_id": actor_id,
        "sources": [],
        "input_tokens": 0,
        "output_tokens": 0,
        "latency_ms": None,
        "model": None,
        "finish_reason": None,
        "reply_to_id": None,
        "error_code": None,
    }
    row.update(values)
    return row


def _log_if_failed(task: asyncio.Future[int]) -> None:
    """Consume the outcome of a question insert nobody awaited (the turn was cancelled)."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("question_not_stored", error=str(task.exception()))
