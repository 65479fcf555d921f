"""Hybrid retrieval: dense (in-process index) + keyword (FTS), fused with RRF."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Sequence
from typing import cast

import numpy as np
import structlog

from parley.domain.retrieval import RetrievedChunk, SearchQuery, reciprocal_rank_fusion
from parley.errors import Conflict, NotFound
from parley.providers.cache.base import Cache
from parley.providers.embeddings.base import Embedder
from parley.providers.memory.base import TurnStore
from parley.providers.vectors.base import VectorIndex
from parley.repositories.search import to_chunk
from parley.services.uow import UnitOfWorkFactory
from parley.settings import RetrievalSettings

log = structlog.get_logger(__name__)


class RetrievalService:
    """Searches one or several collections and keeps the vector index in step with the DB."""

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        embedder: Embedder,
        index: VectorIndex,
        cache: Cache,
        settings: RetrievalSettings,
        dense_in_db: bool = False,
        local_embedder: Embedder | None = None,
        shared: TurnStore | None = None,
    ) -> None:
        self._uow = uow
        self._embedder = embedder
        self._index = index
        self._cache = cache
        self._settings = settings
        # PostgreSQL: pgvector searches vectors inside the same SQL statement as keywords, so
        # there is no in-process copy to keep in sync.
        self._dense_in_db = dense_in_db
        self._local_embedder = local_embedder or embedder
        self._shared = shared
        self._locks: dict[str, asyncio.Lock] = {}
        self._checked_at: dict[str, float] = {}

    @property
    def dimension(self) -> int:
        """Dimension of the query vectors."""
        return self._embedder.dimension

    async def embed_query(self, text: str, *, shared_cache: bool = True) -> np.ndarray:
        """The query's embedding; ``shared_cache=False`` skips the Redis level (a caller that
        already looked there in its own round trip)."""
        embedder = self._embedder if shared_cache else self._local_embedder
        vectors: np.ndarray = await embedder.embed([text], kind="query")
        return np.asarray(vectors[0], dtype=np.float32)

    @property
    def dense_in_db(self) -> bool:
        """Whether vectors are searched by the database (pgvector) rather than in process."""
        return self._dense_in_db

    def collection_lock(self, collection_id: str) -> asyncio.Lock:
        """Serialises index rebuilds and writes of one collection within this process."""
        lock = self._locks.get(collection_id)
        if lock is None:
            lock = self._locks[collection_id] = asyncio.Lock()
        return lock

    async def search(
        self, query: SearchQuery, *, require_collections: bool = False
    ) -> list[RetrievedChunk]:
        """The ``top_k`` best chunks for ``query.text`` across its collections.

        With ``require_collections`` every collection id must exist (``NotFound`` otherwise);
        chat skips that check because a session's collections were checked at its creation.
        """
        if self._dense_in_db:
            if require_collections:
                await self._check_collections(query.collection_ids)
            vector = (await self._embedder.embed([query.text], kind="query"))[0]
            return await self.search_with_vector(query, vector)
        await self.sync(query.collection_ids, force=require_collections)
        if require_collections:
            missing = [c for c in query.collection_ids if self._index.version(c) is None]
            if missing:
                raise NotFound(f"collection {missing[0]} not found", field="collection_ids")
        key = self._cache_key(query)
        if key is not None:
            cached = await self._cache.get(key)
            if cached is not None:
                return list(cast("tuple[RetrievedChunk, ...]", cached))
        vector = (await self._embedder.embed([query.text], kind="query"))[0]
        results = await self.search_with_vector(query, vector)
        if key is not None:
            await self._cache.set(key, tuple(results), ttl_s=self._settings.search_cache_ttl_s)
        return results

    async def search_with_vector(
        self, query: SearchQuery, vector: np.ndarray
    ) -> list[RetrievedChunk]:
        """Hybrid search for an already embedded query: one SQL statement, then fusion."""
        candidates = self._settings.candidates
        dense_ids: list[int] = []
        if not self._dense_in_db:
            # Dense search is an in-process lookup; its hits are hydrated by the same SQL
            # statement that ranks keywords, so a search costs one round trip to the database.
            over = candidates * 4 if query.filters else candidates
            dense_ids = [
                cid for cid, _ in await self._index.search(query.collection_ids, vector, k=over)
            ]
        async with self._uow() as tx:
            found = await tx.search.hybrid(
                query=query.text,
                collection_ids=query.collection_ids,
                keyword_limit=candidates,
                filters=query.filters,
                dense_ids=dense_ids,
                vector=vector if self._dense_in_db else None,
                dense_limit=candidates,
            )
        dense_ranked = found.dense[:candidates]
        fused = reciprocal_rank_fusion([dense_ranked, found.keyword], k=self._settings.rrf_k)
        dense_pos = {cid: i for i, cid in enumerate(dense_ranked, start=1)}
        keyword_pos = {cid: i for i, cid in enumerate(found.keyword, start=1)}
        results: list[RetrievedChunk] = []
        for chunk_id, score in fused[: query.top_k]:
            chunk = to_chunk(found.rows[chunk_id])
            chunk.score = score
            chunk.dense_rank = dense_pos.get(chunk_id)
            chunk.keyword_rank = keyword_pos.get(chunk_id)
            results.append(chunk)
        return results

    async def collection_changed(self, collection_id: str, version: int) -> None:
        """After a change to a collection commits: tell every instance (cached searches of
        the old version become unreachable)."""
        if self._shared is not None:
            await self._shared.publish_versions({collection_id: version})

    async def publish_all_versions(self) -> None:
        """Publish every collection's current version (at start-up; cheap, one round trip)."""
        if self._shared is None:
            return
        async with self._uow() as tx:
            page = await tx.collections.page(limit=100_000, cursor=None)
        versions = {row.id: row.version for row in page.items}
        if versions:
            await self._shared.publish_versions(versions)

    async def _check_collections(self, collection_ids: Sequence[str]) -> None:
        async with self._uow() as tx:
            state = await tx.collections.index_state(collection_ids)
        for cid in collection_ids:
            if cid not in state:
                raise NotFound(f"collection {cid} not found", field="collection_ids")
            self._check_model(cid, state[cid][1])

    def _check_model(self, collection_id: str, model: str) -> None:
        if model != self._embedder.model_id:
            raise Conflict(
                f"collection {collection_id} was embedded with {model!r} but the configured "
                f"embedder is {self._embedder.model_id!r}; re-ingest it or change settings",
                field="collection_ids",
            )

    async def sync(self, collection_ids: Sequence[str], *, force: bool = False) -> None:
        """Bring the in-process index up to each collection's DB version.

        Checked at most every ``index_sync_interval_s`` per collection (one cheap statement),
        so writes made by another process (the CLI, a worker) become searchable quickly without
        a query per search. Writes made in this process update the index immediately.
        """
        if self._dense_in_db:
            return
        now = time.monotonic()
        interval = self._settings.index_sync_interval_s
        due = [
            cid
            for cid in collection_ids
            if force
            or self._index.version(cid) is None
            or now - self._checked_at.get(cid, 0.0) >= interval
        ]
        if not due:
            return
        async with self._uow() as tx:
            state = await tx.collections.index_state(due)
        for cid in due:
            self._checked_at[cid] = now
            if cid not in state:
                await self._index.drop(cid)
                continue
            version, model = state[cid]
            self._check_model(cid, model)
            if self._index.version(cid) != version:
                await self._rebuild(cid, version)

    async def _rebuild(self, collection_id: str, version: int) -> None:
        async with self.collection_lock(collection_id):
            if self._index.version(collection_id) == version:
                return  # another task rebuilt it while we waited
            load_persisted = getattr(self._index, "load_persisted", None)
            if load_persisted is not None and await load_persisted(collection_id, version):
                log.info("vector_index_loaded", collection_id=collection_id, version=version)
                return
            started = time.perf_counter()
            ids_parts: list[np.ndarray] = []
            vec_parts: list[np.ndarray] = []
            async with self._uow() as tx:
                async for ids, vectors in tx.documents.iter_embeddings(collection_id):
                    ids_parts.append(ids)
                    vec_parts.append(vectors)
            dim = self._embedder.dimension
            ids = np.concatenate(ids_parts) if ids_parts else np.empty(0, dtype=np.int64)
            vectors = (
                np.concatenate(vec_parts) if vec_parts else np.empty((0, dim), dtype=np.float32)
            )
            await self._index.replace(collection_id, ids=ids, vectors=vectors, version=version)
            log.info(
                "vector_index_rebuilt",
                collection_id=collection_id,
                version=version,
                vectors=len(ids),
                ms=round((time.perf_counter() - started) * 1000, 1),
            )

    def _cache_key(self, query: SearchQuery) -> str | None:
        versions = [self._index.version(cid) for cid in sorted(query.collection_ids)]
        if any(v is None for v in versions):
            return None
        payload = json.dumps(
            [query.text, sorted(query.collection_ids), versions, query.top_k, query.filters],
            sort_keys=True,
            default=str,
        )
        digest = hashlib.sha256(payload.encode()).hexdigest()
        return f"search:{self._embedder.model_id}:{digest}"
