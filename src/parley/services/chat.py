"""One chat turn, the hot path: history → (rewrite) → retrieve → budget → generate → persist."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import anyio
import numpy as np
import structlog
from cachetools import LRUCache
from sqlalchemy.exc import IntegrityError

from parley.db.base import utcnow
from parley.db.models import MessageRow
from parley.domain.auth import Principal
from parley.domain.budget import plan_budget
from parley.domain.chat import HistoryMessage, Usage
from parley.domain.retrieval import Citation, RetrievedChunk, SearchQuery
from parley.errors import InvalidInput, NotFound, ParleyError
from parley.providers.llm.base import LLM, GenerationRequest
from parley.providers.tokenizers.base import TokenCounter
from parley.repositories.sessions import SessionHead
from parley.repositories.text import require_storable
from parley.services.access import AccessPolicy
from parley.services.hot_turns import HotTurns, PendingWrite, decode_sources, encode_sources
from parley.services.prompt_library import PromptLibrary
from parley.services.provider_keys import ProviderKeyService
from parley.services.quotas import QuotaService
from parley.services.retrieval import RetrievalService
from parley.services.uow import UnitOfWorkFactory
from parley.settings import ChatSettings, LimitSettings, LLMSettings, RetrievalSettings

log = structlog.get_logger(__name__)

_SNIPPET_CHARS = 300
A = TypeVar("A")
B = TypeVar("B")


@dataclass(slots=True)
class PreparedTurn:
    """Everything decided before generation starts (errors surface before any streaming)."""

    session_id: str
    content: str
    actor_id: str | None
    llm: LLM
    request: GenerationRequest
    sources: list[RetrievedChunk]
    started: float
    retrieval_ms: float
    llm_ms: float = 0.0
    rewritten_query: str | None = None
    pending: PendingWrite | None = None
    persisted: bool = False
    rewrite_usage: Usage = field(default_factory=Usage)


@dataclass(slots=True)
class TurnResult:
    """A finished turn as stored: the assistant message with citations and usage."""

    session_id: str
    user_message_id: int
    message_id: int
    content: str
    citations: list[Citation]
    usage: Usage
    model: str
    finish_reason: str
    created_at: datetime
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The assistant message as returned by the API."""
        return {
            "id": self.message_id,
            "session_id": self.session_id,
            "role": "assistant",
            "content": self.content,
            "sources": [c.to_dict() for c in self.citations],
            "usage": {
                "input_tokens": self.usage.input_tokens,
                "output_tokens": self.usage.output_tokens,
                "total_tokens": self.usage.total_tokens,
            },
            "model": self.model,
            "finish_reason": self.finish_reason,
            "created_at": self.created_at.isoformat(),
            "timings": self.timings,
        }


def citations_for(sources: list[RetrievedChunk]) -> list[Citation]:
    """Number the sources given to the model from 1, as in the prompt."""
    return [
        Citation(
            index=i,
            chunk_id=s.chunk_id,
            document_id=s.document_id,
            collection_id=s.collection_id,
            title=s.document_title,
            source=s.source,
            snippet=s.text[:_SNIPPET_CHARS],
            score=s.score,
            page=s.page,
            section=s.section,
        )
        for i, s in enumerate(sources, start=1)
    ]


class ChatService:
    """Runs chat turns with a bounded number of round trips (see ``docs/benchmarks.md``)."""

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
        self._retrieval = retrieval
        self._llm = llm
        self._prompts = prompts
        self._counter = counter
        self._chat = chat
        self._llm_settings = llm_settings
        self._retrieval_settings = retrieval_settings
        self._limits = limits
        self._hot = hot
        self._access = access
        self._quotas = quotas
        self._llms = llms
        # A session's owner and collections never change after creation, so they can be
        # remembered; this lets retrieval start while the history is still loading.
        self._heads: LRUCache[str, SessionHead] = LRUCache(maxsize=10_000)

    async def prepare(
        self, *, actor: Principal, session_id: str, content: str, top_k: int | None = None
    ) -> PreparedTurn:
        """Validate, authorize, check the quota, load history, retrieve and build the prompt.

        Raises before any output: a session that is not the actor's is ``NotFound``.
        """
        started = time.perf_counter()
        text = content.strip()
        if not text:
            raise InvalidInput("message content is empty", field="content")
        if len(text) > self._limits.max_message_chars:
            raise InvalidInput(
                f"message content is limited to {self._limits.max_message_chars} characters",
                field="content",
            )
        require_storable(text, field="content")
        k = top_k or self._retrieval_settings.top_k
        if not 1 <= k <= self._limits.max_top_k:
            raise InvalidInput(f"top_k must be 1..{self._limits.max_top_k}", field="top_k")
        await self._quotas.check(actor)
        llm = await self._llms.llm_for(actor) if self._llms is not None else self._llm
        rewrite = llm.generative and self._llm_settings.rewrite_followups
        head = self._heads.get(session_id)
        if head is not None:
            self._authorize(actor, session_id, head)
        llm_ms = 0.0
        rewritten: str | None = None
        pending: PendingWrite | None = None
        rewrite_usage = Usage()
        if self._hot is not None:
            history, sources, rewritten, llm_ms, pending, rewrite_usage = await self._prepare_hot(
                actor, llm, session_id, text, k, rewrite=rewrite
            )
        elif head is not None and not rewrite:
            scope = await self._access.filter_readable(actor, head.scope)
            (_, history), sources = await _both(
                self._load(actor, session_id), self._search(text, scope, k)
            )
        else:
            head, history = await self._load(actor, session_id)
            scope = await self._access.filter_readable(actor, head.scope)
            query = text
            if rewrite and history:
                t = time.perf_counter()
                rewritten, rewrite_usage = await self._rewrite(llm, text, history)
                llm_ms += (time.perf_counter() - t) * 1000
                query = rewritten or text
            sources = await self._search(query, scope, k)
        retrieval_ms = (time.perf_counter() - started) * 1000 - llm_ms
        plan = plan_budget(
            history=history,
            chunks=sources,
            budget=self._chat.context_budget_tokens,
            history_share=self._chat.history_share,
        )
        messages = self._prompts.build_answer_messages(
            question=text, sources=plan.chunks, history=plan.history
        )
        request = GenerationRequest(
            messages=messages,
            question=text,
            sources=plan.chunks,
            max_tokens=self._llm_settings.max_output_tokens,
            temperature=self._llm_settings.temperature,
        )
        return PreparedTurn(
            session_id=session_id,
            content=text,
            actor_id=actor.user_id,
            llm=llm,
            request=request,
            sources=plan.chunks,
            started=started,
            retrieval_ms=retrieval_ms,
            llm_ms=llm_ms,
            rewritten_query=rewritten,
            pending=pending,
            rewrite_usage=rewrite_usage,
        )

    @staticmethod
    def _authorize(actor: Principal, session_id: str, head: SessionHead) -> None:
        """Only the session's owner (or an admin) may take a turn in it."""
        if not actor.sees_all and head.owner_id != actor.user_id:
            raise NotFound(f"session {session_id} not found")

    async def _prepare_hot(
        self, actor: Principal, llm: LLM, session_id: str, text: str, k: int, *, rewrite: bool
    ) -> tuple[list[HistoryMessage], list[RetrievedChunk], str | None, float, PendingWrite, Usage]:
        """Scale-out path: one store read, the database only for what the store lacks."""
        assert self._hot is not None
        head = self._heads.get(session_id)
        hint = head.scope if head is not None else None
        read, embedding_key, digest = await self._hot.read(
            session_id=session_id, text=text, top_k=k, scope_hint=hint
        )
        history, refill = read.history, None
        # The owner is not kept in the store: a session this process has not seen yet is
        # read from the database once (then remembered), and authorized before anything
        # cached for it is used.
        if head is None or history is None:
            head, db_history = await self._load(actor, session_id)
            if history is None:
                history = refill = db_history
        scope = head.scope
        pending = PendingWrite(
            read=read, scope=scope, refill=refill, embedding_key=embedding_key, query_digest=digest
        )
        readable = await self._access.filter_readable(actor, scope)
        if readable != scope:
            # Access to one of the session's collections was withdrawn: the shared search
            # cache is keyed by the full scope, so it must be neither read nor written.
            scope = readable
            pending.query_digest = None
            read.search = None
        llm_ms = 0.0
        rewritten: str | None = None
        rewrite_usage = Usage()
        if rewrite and history:
            t = time.perf_counter()
            rewritten, rewrite_usage = await self._rewrite(llm, text, history)
            llm_ms = (time.perf_counter() - t) * 1000
            if rewritten == text:  # already standalone: the shared caches still apply
                rewritten = None
        if rewritten:
            # The shared caches are keyed by the question as asked, and were read in this
            # turn's one round trip; a rewritten query uses the in-process cache only.
            pending.embedding_key = pending.query_digest = None
            rewritten_vector = await self._retrieval.embed_query(rewritten, shared_cache=False)
            query = SearchQuery(text=rewritten, collection_ids=scope, top_k=k)
            await self._retrieval.sync(scope)
            sources = await self._retrieval.search_with_vector(query, rewritten_vector)
            return history, sources, rewritten, llm_ms, pending, rewrite_usage
        cached = decode_sources(read.search) if read.search is not None else None
        if cached is not None:
            return history, cached, None, llm_ms, pending, rewrite_usage
        vector = self._hot.vector(read, self._retrieval.dimension)
        if vector is None:
            vector = await self._retrieval.embed_query(text, shared_cache=False)
            pending.embedding = np.asarray(vector, dtype=np.float32).tobytes()
        await self._retrieval.sync(scope)
        sources = await self._retrieval.search_with_vector(
            SearchQuery(text=text, collection_ids=scope, top_k=k), vector
        )
        if pending.query_digest is not None:
            pending.search = encode_sources(sources)
        return history, sources, None, llm_ms, pending, rewrite_usage

    async def complete(self, turn: PreparedTurn) -> TurnResult:
        """Generate the whole answer, then persist the turn."""
        t = time.perf_counter()
        completion = await turn.llm.complete(turn.request)
        turn.llm_ms += (time.perf_counter() - t) * 1000
        return await self._persist(
            turn, completion.text, completion.usage, completion.model, completion.finish_reason
        )

    async def stream(self, turn: PreparedTurn) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Yield ``(event, data)`` pairs: ``sources``, many ``token``, then ``done``.

        If the client goes away mid-answer, what was generated is still persisted (marked
        ``interrupted``) so the conversation loses nothing. If the model fails, nothing is
        stored and the error propagates (the caller reports it as a final event).
        """
        citations = citations_for(turn.sources)
        yield "sources", {"sources": [c.to_dict() for c in citations]}
        parts: list[str] = []
        usage: Usage | None = None
        finish = "stop"
        done = failed = False
        try:
            t = time.perf_counter()
            async for delta in turn.llm.stream(turn.request):
                if delta.text:
                    parts.append(delta.text)
                    yield "token", {"text": delta.text}
                if delta.usage is not None:
                    usage = delta.usage
                if delta.finish_reason:
                    finish = delta.finish_reason
            turn.llm_ms += (time.perf_counter() - t) * 1000
            # Shielded: a client leaving during the commit must not cancel it half-way (and
            # the finally below must then see the turn as stored, not store it again).
            with anyio.CancelScope(shield=True):
                result = await self._persist(
                    turn,
                    "".join(parts),
                    usage or self._estimate(turn, parts),
                    turn.llm.model,
                    finish,
                )
            done = True
            yield "done", result.to_dict()
        except ParleyError:
            failed = True
            raise
        finally:
            if not done and not failed and parts and not turn.persisted:
                with anyio.CancelScope(shield=True):
                    await self._persist(
                        turn,
                        "".join(parts),
                        usage or self._estimate(turn, parts),
                        turn.llm.model,
                        "interrupted",
                    )

    def _estimate(self, turn: PreparedTurn, parts: list[str]) -> Usage:
        """Usage when the provider reported none (providers send it with the last chunk, so
        a client that leaves early would otherwise be billed nothing): the prompt's tokens
        in, the text generated so far out, with the configured tokenizer."""
        prompt = [m.content for m in turn.request.messages]
        counts = self._counter.count_many([*prompt, "".join(parts)])
        return Usage(input_tokens=sum(counts[:-1]), output_tokens=counts[-1])

    async def _load(
        self, actor: Principal, session_id: str
    ) -> tuple[SessionHead, list[HistoryMessage]]:
        async with self._uow() as tx:
            head, history = await tx.sessions.recent_history(
                session_id, limit=self._chat.history_messages
            )
        if head is None:
            self._heads.pop(session_id, None)
            raise NotFound(f"session {session_id} not found")
        self._heads[session_id] = head
        self._authorize(actor, session_id, head)
        return head, history

    async def _search(self, query: str, scope: list[str], k: int) -> list[RetrievedChunk]:
        return await self._retrieval.search(SearchQuery(text=query, collection_ids=scope, top_k=k))

    async def _rewrite(
        self, llm: LLM, question: str, history: list[HistoryMessage]
    ) -> tuple[str | None, Usage]:
        messages = self._prompts.build_rewrite_messages(question=question, history=history[-6:])
        request = GenerationRequest(
            messages=messages, question=question, max_tokens=128, temperature=0.0
        )
        completion = await llm.complete(request)
        rewritten = completion.text.strip().strip('"').strip()
        return rewritten[: self._limits.max_query_chars] or None, completion.usage

    async def _persist(
        self, turn: PreparedTurn, answer: str, usage: Usage, model: str, finish: str
    ) -> TurnResult:
        citations = citations_for(turn.sources)
        t = time.perf_counter()
        now = utcnow()
        # The rewrite call is billed to the turn too, so quotas count every token spent.
        usage = Usage(
            input_tokens=usage.input_tokens + turn.rewrite_usage.input_tokens,
            output_tokens=usage.output_tokens + turn.rewrite_usage.output_tokens,
        )
        user_tokens, answer_tokens = self._counter.count_many([turn.content, answer])
        total_ms = (time.perf_counter() - turn.started) * 1000
        rows: list[dict[str, Any]] = [
            {
                "session_id": turn.session_id,
                "owner_id": turn.actor_id,
                "role": "user",
                "content": turn.content,
                "sources": [],
                "token_count": user_tokens,
                # Same keys as the assistant row, so both go out as ONE multi-row INSERT.
                "input_tokens": 0,
                "output_tokens": 0,
                "latency_ms": None,
                "model": None,
                "finish_reason": None,
                "created_at": now,
            },
            {
                "session_id": turn.session_id,
                "owner_id": turn.actor_id,
                "role": "assistant",
                "content": answer,
                "sources": [c.to_dict() for c in citations],
                "token_count": answer_tokens,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "latency_ms": round(total_ms, 3),
                "model": model,
                "finish_reason": finish,
                "created_at": now,
            },
        ]
        # Both messages, their sources and usage: one statement, one transaction.
        async with self._uow(write=True) as tx:
            try:
                ids = await tx.sessions.add_messages(rows)
            except IntegrityError as exc:  # the session was deleted during the turn
                raise NotFound(f"session {turn.session_id} not found") from exc
            await tx.commit()
        turn.persisted = True
        self._quotas.record(
            turn.actor_id, input_tokens=usage.input_tokens, output_tokens=usage.output_tokens
        )
        user_id, assistant_id = ids["user"], ids["assistant"]
        if self._hot is not None and turn.pending is not None:
            appended = [
                HistoryMessage(role="user", content=turn.content, token_count=user_tokens),
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
        log.info("chat_turn", session_id=turn.session_id, message_id=assistant_id, **timings)
        return TurnResult(
            session_id=turn.session_id,
            user_message_id=user_id,
            message_id=assistant_id,
            content=answer,
            citations=citations,
            usage=usage,
            model=model,
            finish_reason=finish,
            created_at=now,
            timings=timings,
        )


async def _both(first: Awaitable[A], second: Awaitable[B]) -> tuple[A, B]:
    """Run two awaitables concurrently; if one fails, cancel and await the other."""
    one, two = asyncio.ensure_future(first), asyncio.ensure_future(second)
    try:
        await asyncio.gather(one, two)
    except BaseException:
        for task in (one, two):
            task.cancel()
        await asyncio.gather(one, two, return_exceptions=True)
        raise
    return one.result(), two.result()


def message_dict(row: MessageRow) -> dict[str, Any]:
    """A stored message as returned by the API."""
    out: dict[str, Any] = {
        "id": row.id,
        "session_id": row.session_id,
        "role": row.role,
        "content": row.content,
        "created_at": row.created_at.isoformat(),
    }
    if row.role == "assistant":
        out["sources"] = row.sources or []
        out["usage"] = {
            "input_tokens": row.input_tokens,
            "output_tokens": row.output_tokens,
            "total_tokens": row.input_tokens + row.output_tokens,
        }
        out["model"] = row.model
        out["finish_reason"] = row.finish_reason
        out["latency_ms"] = row.latency_ms
    return out
