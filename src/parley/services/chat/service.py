"""The chat use case: validate → prepare → generate (whole or streamed) → store."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio

from parley.domain.auth import Principal
from parley.domain.chat import Usage
from parley.errors import (
    Conflict,
    InvalidInput,
    NotFound,
    ParleyError,
    ProviderEmptyResponse,
    ProviderError,
)
from parley.providers.llm.base import LLM
from parley.providers.tokenizers.base import TokenCounter
from parley.repositories.text import require_storable
from parley.services.access import AccessPolicy
from parley.services.chat.persistence import TurnRecorder
from parley.services.chat.preparation import TurnPreparer
from parley.services.chat.turn import PreparedTurn, TurnResult, citations_for
from parley.services.hot_turns import HotTurns
from parley.services.prompt_library import PromptLibrary
from parley.services.provider_keys import ProviderKeyService
from parley.services.quotas import QuotaService
from parley.services.retrieval import RetrievalService
from parley.services.uow import UnitOfWorkFactory
from parley.settings import ChatSettings, LimitSettings, LLMSettings, RetrievalSettings


class ChatService:
    """Runs chat turns with a bounded number of round trips (see ``docs/benchmarks.md``).

    A turn whose generation fails keeps its question (marked failed, its id given in the
    error as ``message_id``); :meth:`prepare_retry` runs such a question again.
    """

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        retrieval: RetrievalService,
        llm: LLM,
        prompts: PromptLibrary,
        counter: TokenCounter,
        chat: ChatSettings,
        llm_settings: LLMSettings,
        retrieval_settings: RetrievalSettings,
        limits: LimitSettings,
        access: AccessPolicy,
        quotas: QuotaService,
        llms: ProviderKeyService | None = None,
        hot: HotTurns | None = None,
    ) -> None:
        self._uow = uow
        self._llm = llm
        self._counter = counter
        self._llm_settings = llm_settings
        self._retrieval_settings = retrieval_settings
        self._limits = limits
        self._quotas = quotas
        self._llms = llms
        self._preparer = TurnPreparer(
            uow=uow,
            retrieval=retrieval,
            prompts=prompts,
            chat=chat,
            llm_settings=llm_settings,
            limits=limits,
            access=access,
            hot=hot,
        )
        self._recorder = TurnRecorder(uow=uow, counter=counter, quotas=quotas, hot=hot)

    async def prepare(
        self, *, actor: Principal, session_id: str, content: str, top_k: int | None = None
    ) -> PreparedTurn:
        """Validate, authorize, check the quota, load history, retrieve and build the prompt.

        Raises before any output: a session that is not the actor's is ``NotFound``.
        """
        return await self._prepare(actor, session_id, content, top_k, question_id=None)

    async def prepare_retry(
        self, *, actor: Principal, session_id: str, message_id: int, top_k: int | None = None
    ) -> PreparedTurn:
        """Prepare the turn of a stored question that has no answer (its generation failed,
        or the server stopped mid-turn) again; the answer will point to that question."""
        async with self._uow() as tx:
            stored = await tx.sessions.question(session_id, message_id)
        if stored is None or not (actor.sees_all or stored.owner_id == actor.user_id):
            raise NotFound(f"message {message_id} not found in session {session_id}")
        if stored.role != "user":
            raise InvalidInput("only a question (a user message) can be retried")
        if stored.answered:
            raise Conflict(f"message {message_id} already has an answer")
        return await self._prepare(actor, session_id, stored.content, top_k, question_id=message_id)

    async def complete(self, turn: PreparedTurn) -> TurnResult:
        """Generate the whole answer, then store it; a failure is stored on the question."""
        self._recorder.begin(turn)
        t = time.perf_counter()
        try:
            completion = await turn.llm.complete(turn.request)
            _require_text(turn.llm, completion.text)
        except ProviderError as exc:
            await self._recorder.fail(turn, exc)
            raise
        turn.llm_ms += (time.perf_counter() - t) * 1000
        return await self._recorder.finish(
            turn, completion.text, completion.usage, completion.model, completion.finish_reason
        )

    async def stream(self, turn: PreparedTurn) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Yield ``(event, data)`` pairs: ``sources``, many ``token``, then ``done``.

        The question is committed before the first token is sent. If the client goes away
        mid-answer, what was generated is still stored (marked ``interrupted``) so the
        conversation loses nothing. If the model fails, the question is marked failed, no
        answer is stored and the error propagates (the caller reports it as a final event).
        """
        self._recorder.begin(turn)
        citations = citations_for(turn.sources)
        yield "sources", {"sources": [c.to_dict() for c in citations]}
        parts: list[str] = []
        usage: Usage | None = None
        finish = "stop"
        done = failed = False
        deltas = turn.llm.stream(turn.request)
        try:
            t = time.perf_counter()
            async for delta in deltas:
                if delta.text:
                    if not parts:
                        # No answer reaches the client before its question is committed (the
                        # insert ran while the model was asked, so this rarely waits).
                        await self._recorder.question_id(turn)
                    parts.append(delta.text)
                    yield "token", {"text": delta.text}
                if delta.usage is not None:
                    usage = delta.usage
                if delta.finish_reason:
                    finish = delta.finish_reason
            turn.llm_ms += (time.perf_counter() - t) * 1000
            _require_text(turn.llm, "".join(parts))
            # Shielded: a client leaving during the commit must not cancel it half-way (and
            # the finally below must then see the turn as stored, not store it again).
            with anyio.CancelScope(shield=True):
                result = await self._recorder.finish(
                    turn,
                    "".join(parts),
                    usage or self._estimate(turn, parts),
                    turn.llm.model,
                    finish,
                )
            done = True
            yield "done", result.to_dict()
        except ProviderError as exc:
            failed = True
            with anyio.CancelScope(shield=True):
                await self._recorder.fail(turn, exc)
            raise
        except ParleyError:
            failed = True
            raise
        finally:
            with anyio.CancelScope(shield=True):
                # An answer left early (client gone, failure) releases the model's connection
                # now rather than when the generator is collected.
                close = getattr(deltas, "aclose", None)
                if close is not None:
                    await close()
                if not done and not failed and parts and not turn.persisted:
                    await self._keep_partial(turn, parts, usage)

    async def _prepare(
        self,
        actor: Principal,
        session_id: str,
        content: str,
        top_k: int | None,
        *,
        question_id: int | None,
    ) -> PreparedTurn:
        started = time.perf_counter()
        text = content.strip()
        k = top_k or self._retrieval_settings.top_k
        self._validate(text, k)
        await self._quotas.check(actor)
        llm = await self._llms.llm_for(actor) if self._llms is not None else self._llm
        # One deadline for the turn's model calls: the rewrite and the answer share it.
        deadline = asyncio.get_running_loop().time() + self._llm_settings.timeout_s
        try:
            turn = await self._preparer.prepare(
                actor=actor,
                llm=llm,
                session_id=session_id,
                text=text,
                top_k=k,
                started=started,
                deadline=deadline,
            )
        except ProviderError as exc:
            await self._recorder.fail_early(
                session_id=session_id,
                actor_id=actor.user_id,
                content=text,
                question_id=question_id,
                error=exc,
            )
            raise
        turn.question_id = question_id
        return turn

    def _validate(self, text: str, top_k: int) -> None:
        if not text:
            raise InvalidInput("message content is empty", field="content")
        if len(text) > self._limits.max_message_chars:
            raise InvalidInput(
                f"message content is limited to {self._limits.max_message_chars} characters",
                field="content",
            )
        require_storable(text, field="content")
        if not 1 <= top_k <= self._limits.max_top_k:
            raise InvalidInput(f"top_k must be 1..{self._limits.max_top_k}", field="top_k")

    async def _keep_partial(
        self, turn: PreparedTurn, parts: list[str], usage: Usage | None
    ) -> None:
        """Store what was generated before the client left, marked ``interrupted``."""
        answer = "".join(parts)
        # The session may have been deleted meanwhile: then there is nothing to keep it in.
        with contextlib.suppress(ParleyError):
            await self._recorder.finish(
                turn, answer, usage or self._estimate(turn, parts), turn.llm.model, "interrupted"
            )

    def _estimate(self, turn: PreparedTurn, parts: list[str]) -> Usage:
        """Usage when the provider reported none (providers send it with the last chunk, so
        a client that leaves early would otherwise be billed nothing): the prompt's tokens
        in, the text generated so far out, with the configured tokenizer."""
        prompt = [m.content for m in turn.request.messages]
        counts = self._counter.count_many([*prompt, "".join(parts)])
        return Usage(input_tokens=sum(counts[:-1]), output_tokens=counts[-1])


def _require_text(llm: LLM, text: str) -> None:
    """Whatever the adapter, no empty answer is ever stored."""
    if not text.strip():
        raise ProviderEmptyResponse(f"{llm.name} returned an empty answer", provider=llm.name)
