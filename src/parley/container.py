"""Composition root: builds engines, providers and services once; shared by API, CLI and worker."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.db import migrate
from parley.db.session import StatementCounter, create_engine, create_session_factory
from parley.jobs.runner import JobRunner
from parley.providers.cache.base import Cache
from parley.providers.cache.memory import MemoryCache
from parley.providers.cache.tiered import TieredCache
from parley.providers.embeddings.base import Embedder
from parley.providers.embeddings.cached import CachedEmbedder
from parley.providers.llm.base import LLM
from parley.providers.registry import (
    build_embedder,
    build_llm,
    build_token_counter,
    build_vector_index,
)
from parley.providers.tokenizers.base import TokenCounter
from parley.providers.vectors.base import VectorIndex
from parley.services.access import AccessPolicy
from parley.services.accounts import AccountService
from parley.services.audit import AuditService
from parley.services.auth import AuthService
from parley.services.chat import ChatService
from parley.services.collections import CollectionService
from parley.services.crypto import SecretBox
from parley.services.health import HealthService
from parley.services.hot_turns import HotTurns
from parley.services.ingest.prepare import PrepareConfig
from parley.services.ingest.preparer import build_preparer
from parley.services.ingestion import IngestionService
from parley.services.invalidations import Invalidations
from parley.services.passwords import Passwords
from parley.services.prompt_library import PromptLibrary
from parley.services.provider_keys import ProviderKeyService
from parley.services.quotas import QuotaService
from parley.services.rate_limits import LoginLockout, RateLimiter
from parley.services.retrieval import RetrievalService
from parley.services.secrets import resolve_encryption_key, resolve_jwt_secret
from parley.services.sessions import SessionService
from parley.services.tokens import TokenSigner
from parley.services.uow import UnitOfWorkFactory
from parley.settings import Settings

if TYPE_CHECKING:
    from parley.providers.cache.redis import RedisCache
    from parley.providers.memory.redis import RedisTurnStore
    from parley.providers.redis_support import RedisGuard

log = structlog.get_logger(__name__)


@dataclass(slots=True)
class RedisParts:
    """The shared Redis pool behind its circuit breaker, and what is built on it."""

    guard: RedisGuard
    store: RedisTurnStore
    embedding_l2: RedisCache


def _redis_parts(settings: Settings) -> RedisParts | None:
    if settings.redis_url is None:
        return None
    from parley.providers.cache.redis import RedisCache
    from parley.providers.memory.redis import RedisTurnStore
    from parley.providers.redis_support import RedisGuard, call_deadline_s, create_redis

    r = settings.redis
    client = create_redis(settings.redis_url.get_secret_value(), r)
    guard = RedisGuard(client, retry_after_s=r.retry_after_s, timeout_s=call_deadline_s(r))
    return RedisParts(
        guard=guard,
        store=RedisTurnStore(guard, r),
        embedding_l2=RedisCache(guard, f"{r.key_prefix}qemb:", r.cache_ttl_s),
    )


def _jwt_secret(settings: Settings) -> bytes:
    """The signing secret; in local dev mode on an external database without one, a
    throwaway secret (no token is ever checked there) rather than refusing to start."""
    if settings.auth == "off" and settings.jwt_secret is None and not settings.is_sqlite:
        return secrets.token_bytes(48)
    return resolve_jwt_secret(settings)


@dataclass(slots=True)
class Container:
    """Everything a process needs, wired once. Close it with :meth:`aclose`."""

    settings: Settings
    engine: AsyncEngine
    statements: StatementCounter
    uow: UnitOfWorkFactory
    embedder: Embedder
    llm: LLM
    token_counter: TokenCounter
    index: VectorIndex
    cache: Cache
    retrieval: RetrievalService
    ingestion: IngestionService
    collections: CollectionService
    sessions: SessionService
    chat: ChatService
    runner: JobRunner
    health: HealthService
    access: AccessPolicy
    auth: AuthService
    accounts: AccountService
    audit: AuditService
    quotas: QuotaService
    provider_keys: ProviderKeyService
    rate_limits: RateLimiter
    invalidations: Invalidations
    redis: RedisParts | None = None
    _background: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        llm: LLM | None = None,
        token_counter: TokenCounter | None = None,
    ) -> Container:
        """Wire the object graph. Nothing connects or loads a model until used."""
        # Checked first: a refused secret must not leave an engine behind.
        jwt_secret = _jwt_secret(settings)
        engine, statements = create_engine(settings)
        uow = UnitOfWorkFactory(
            create_session_factory(engine),
            serialize_writes=settings.is_sqlite,
            search_language=settings.db.search_language,
        )
        cache = MemoryCache(
            maxsize=settings.embeddings.query_cache_size + settings.retrieval.search_cache_size,
            ttl_s=settings.retrieval.search_cache_ttl_s or 3600.0,
        )
        raw_embedder = embedder or build_embedder(settings.embeddings)
        redis = _redis_parts(settings)
        # Query embeddings: in-process L1, plus Redis L2 shared by all instances when configured.
        # The chat turn reads its embedding together with the history (one round trip), so it
        # uses the L1-only view; other searches use both levels.
        local_embedder = CachedEmbedder(raw_embedder, cache)
        cached_embedder = (
            CachedEmbedder(raw_embedder, TieredCache(cache, redis.embedding_l2))
            if redis is not None
            else local_embedder
        )
        counter = token_counter or build_token_counter(settings.chunking)
        index = build_vector_index(settings, dimension=raw_embedder.dimension)
        retrieval = RetrievalService(
            uow=uow,
            embedder=cached_embedder,
            index=index,
            cache=cache,
            settings=settings.retrieval,
            dense_in_db=settings.is_postgres,
            local_embedder=local_embedder,
            shared=redis.store if redis is not None else None,
        )
        chosen_llm = llm or build_llm(settings.llm)
        security = settings.security
        bus = Invalidations(
            guard=redis.guard if redis is not None else None,
            url=settings.redis_url.get_secret_value() if settings.redis_url else None,
            settings=settings.redis,
        )
        access = AccessPolicy(uow=uow, ttl_s=security.access_cache_ttl_s, bus=bus)
        quotas = QuotaService(uow=uow, settings=settings.quotas)
        provider_keys = ProviderKeyService(
            uow=uow,
            box=SecretBox(resolve_encryption_key(settings, jwt_secret)),
            server_llm=chosen_llm,
            llm_settings=settings.llm,
            cache_ttl_s=security.key_cache_ttl_s,
            bus=bus,
        )
        guard = redis.guard if redis is not None else None
        prefix = settings.redis.key_prefix
        passwords = Passwords(security)
        rate_limits = RateLimiter(settings.rate_limits, redis=guard, key_prefix=prefix)
        auth = AuthService(
            uow=uow,
            signer=TokenSigner(jwt_secret, ttl_s=security.access_token_ttl_s),
            passwords=passwords,
            lockout=LoginLockout(security, redis=guard, key_prefix=prefix),
            settings=security,
            bus=bus,
        )
        runner_box: list[JobRunner] = []
        ingestion = IngestionService(
            uow=uow,
            embedder=raw_embedder,
            index=index,
            retrieval=retrieval,
            # Parsing runs in parser processes started on first use (none for commands that
            # never ingest), closed by aclose().
            preparer=build_preparer(
                PrepareConfig(
                    counter=counter, chunking=settings.chunking, limits=settings.ingest_limits
                )
            ),
            limits=settings.limits,
            on_submit=lambda: runner_box[0].wake() if runner_box else None,
        )
        runner = JobRunner(uow=uow, ingestion=ingestion, settings=settings.jobs)
        runner_box.append(runner)
        return cls(
            settings=settings,
            engine=engine,
            statements=statements,
            uow=uow,
            embedder=cached_embedder,
            llm=chosen_llm,
            token_counter=counter,
            index=index,
            cache=cache,
            retrieval=retrieval,
            ingestion=ingestion,
            collections=CollectionService(
                uow=uow,
                embedder=raw_embedder,
                index=index,
                retrieval=retrieval,
                access=access,
                max_name_chars=settings.limits.max_name_chars,
            ),
            sessions=SessionService(
                uow=uow,
                limits=settings.limits,
                shared=redis.store if redis is not None else None,
            ),
            chat=ChatService(
                uow=uow,
                retrieval=retrieval,
                llm=chosen_llm,
                prompts=PromptLibrary(settings.chat.prompts_dir),
                counter=counter,
                chat=settings.chat,
                llm_settings=settings.llm,
                retrieval_settings=settings.retrieval,
                limits=settings.limits,
                access=access,
                quotas=quotas,
                llms=provider_keys,
                hot=(
                    HotTurns(
                        redis.store,
                        model_id=raw_embedder.model_id,
                        history_limit=settings.chat.history_messages,
                    )
                    if redis is not None
                    else None
                ),
            ),
            runner=runner,
            health=HealthService(
                engine=engine,
                embedder=cached_embedder,
                llm=chosen_llm,
                jobs_in_process=settings.jobs.run_in_process,
                redis=redis.guard if redis is not None else None,
                rate_limits=rate_limits.status if settings.rate_limits.enabled else None,
                auth_mode=settings.auth,
            ),
            access=access,
            auth=auth,
            accounts=AccountService(
                uow=uow,
                passwords=passwords,
                auth=auth,
                access=access,
                password_min_chars=security.password_min_chars,
            ),
            audit=AuditService(uow=uow),
            quotas=quotas,
            provider_keys=provider_keys,
            rate_limits=rate_limits,
            invalidations=bus,
            redis=redis,
        )

    async def prepare_database(self) -> None:
        """Apply migrations when configured to; on PostgreSQL ensure the HNSW index exists."""
        if self.settings.jobs.auto_migrate:
            await migrate.upgrade(self.engine)
        if self.settings.is_postgres:
            from parley.repositories.search_postgres import hnsw_index_sql

            async with self.engine.begin() as conn:
                await conn.execute(text(hnsw_index_sql(self.embedder.dimension)))

    async def start_background(self, *, run_jobs: bool | None = None) -> None:
        """Start the in-process job runner; load the model and index copies off the request path."""
        if self.settings.jobs.run_in_process if run_jobs is None else run_jobs:
            self.runner.start()
        self._background.append(asyncio.create_task(self._warm_index(), name="warm-index"))
        self._background.append(
            asyncio.create_task(self.auth.run_touch_flusher(), name="key-last-used")
        )
        if self.redis is not None:
            self._background.append(
                asyncio.create_task(self.invalidations.run(self._invalidate), name="invalidate")
            )

    def _invalidate(self, event: Mapping[str, str]) -> None:
        """Apply another instance's invalidation to every per-process cache it concerns."""
        self.auth.apply(event)
        self.access.apply(event)
        self.provider_keys.apply(event)

    async def _warm_index(self) -> None:
        try:
            await self.retrieval.publish_all_versions()
            # Load the embedding model now rather than on the first user's query.
            warmup = getattr(self.embedder, "warmup", None)
            if warmup is not None:
                await warmup()
            async with self.uow() as tx:
                page = await tx.collections.page(limit=10_000, cursor=None)
            await self.retrieval.sync([c.id for c in page.items], force=True)
        except Exception:  # warming is an optimisation; searches sync on demand anyway
            log.warning("warmup_failed", exc_info=True)

    async def aclose(self) -> None:
        """Stop background work, persist index copies, close clients and the engine.

        Every step runs even if an earlier one fails (a failure is logged), so one broken
        client cannot leave the others open.
        """
        await self.runner.stop()
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        await self.auth.flush_last_used()
        await self.invalidations.aclose()
        closers: list[Callable[[], Awaitable[object]]] = [
            self.ingestion.aclose,
            self.index.aclose,
            self.llm.aclose,
            self.provider_keys.aclose,
            self.rate_limits.aclose,
            self.embedder.aclose,
        ]
        if self.redis is not None:
            closers.append(self.redis.guard.client.aclose)
        closers.append(self.engine.dispose)
        for close in closers:
            try:
                await close()
            except Exception:
                log.exception("close_failed", step=getattr(close, "__qualname__", repr(close)))
