"""Before generation: history, follow-up rewrite, retrieval and the prompt, in few round trips.

Every provider call here (rewrite, query embedding) comes after the actor was authorized for
the session, so a provider failure may safely store the question as failed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import TypeVar

import numpy as np
from cachetools import LRUCache

from parley.domain.auth import Principal
from parley.domain.budget import plan_budget
from parley.domain.chat import HistoryMessage, Usage
from parley.domain.retrieval import RetrievedChunk, SearchQuery
from parley.errors import NotFound
from parley.providers.llm.base import LLM, GenerationRequest
from parley.repositories.sessions import SessionHead
from parley.services.access import AccessPolicy
from parley.services.chat.turn import PreparedTurn
from parley.services.hot_turns import HotTurns, PendingWrite, decode_sources, encode_sources
from parley.services.prompt_library import PromptLibrary
from parley.services.retrieval import RetrievalService
from parley.services.uow import UnitOfWorkFactory
from parley.settings import ChatSettings, LimitSettings, LLMSettings

A = TypeVar("A")
B = TypeVar("B")


class TurnPreparer:
    """Builds a :class:`PreparedTurn` from a validated question."""

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        retrieval: RetrievalService,
        prompts: PromptLibrary,
        chat: ChatSettings,
        llm_settings: LLMSettings,
        limits: LimitSettings,
        access: AccessPolicy,
        hot: HotTurns | None,
    ) -> None:
        self._uow = uow
        self._retrieval = retrieval
        self._prompts = prompts
        self._chat = chat
        self._llm_settings = llm_settings
        self._limits = limits
        self._access = access
        self._hot = hot
        # A session's owner and collections never change after creation, so they can be
        # remembered; this lets retrieval start while the history is still loading.
        self._heads: LRUCache[str, SessionHead] = LRUCache(maxsize=10_000)

    async def prepare(
        self,
        *,
        actor: Principal,
        llm: LLM,
        session_id: str,
        text: str,
        top_k: int,
        started: float,
        deadline: float,
    ) -> PreparedTurn:
        """Authorize, load history, rewrite a follow-up, retrieve and build the prompt.

        ``deadline`` (event-loop time) bounds the rewrite and, later, the answer.
        """
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
                actor, llm, session_id, text, top_k, rewrite=rewrite, deadline=deadline
            )
        elif head is not None and not rewrite:
            scope = await self._access.filter_readable(actor, head.scope)
            (_, history), sources = await _both(
                self.load(actor, session_id), self._search(text, scope, top_k)
            )
        else:
            head, history = await self.load(actor, session_id)
            scope = await self._access.filter_readable(actor, head.scope)
            query = text
            if rewrite and history:
                t = time.perf_counter()
                rewritten, rewrite_usage = await self._rewrite(llm, text, history, deadline)
                llm_ms += (time.perf_counter() - t) * 1000
                query = rewritten or text
            sources = await self._search(query, scope, top_k)
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
            deadline=deadline,
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

    async def load(
        self, actor: Principal, session_id: str
    ) -> tuple[SessionHead, list[HistoryMessage]]:
        """The session (authorized for ``actor``) and its recent conversation."""
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

    @staticmethod
    def _authorize(actor: Principal, session_id: str, head: SessionHead) -> None:
        """Only the session's owner (or an admin) may take a turn in it."""
        if not actor.sees_all and head.owner_id != actor.user_id:
            raise NotFound(f"session {session_id} not found")

    async def _prepare_hot(
        self,
        actor: Principal,
        llm: LLM,
        session_id: str,
        text: str,
        k: int,
        *,
        rewrite: bool,
        deadline: float,
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
            head, db_history = await self.load(actor, session_id)
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
            rewritten, rewrite_usage = await self._rewrite(llm, text, history, deadline)
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

    async def _search(self, query: str, scope: list[str], k: int) -> list[RetrievedChunk]:
        return await self._retrieval.search(SearchQuery(text=query, collection_ids=scope, top_k=k))

    async def _rewrite(
        self, llm: LLM, question: str, history: list[HistoryMessage], deadline: float
    ) -> tuple[str | None, Usage]:
        messages = self._prompts.build_rewrite_messages(question=question, history=history[-6:])
        request = GenerationRequest(
            messages=messages,
            question=question,
            max_tokens=128,
            temperature=0.0,
            deadline=deadline,
        )
        completion = await llm.complete(request)
        rewritten = completion.text.strip().strip('"').strip()
        return rewritten[: self._limits.max_query_chars] or None, completion.usage


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
