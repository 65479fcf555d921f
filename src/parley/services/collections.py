"""Collections and documents: create, list, inspect, delete."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from parley.db.models import CollectionRow, DocumentRow, JobItemRow, JobRow
from parley.errors import Conflict, InvalidInput, NotFound
from parley.providers.embeddings.base import Embedder
from parley.providers.vectors.base import VectorIndex
from parley.repositories.pagination import Page
from parley.services.retrieval import RetrievalService
from parley.services.uow import UnitOfWorkFactory


@dataclass(slots=True)
class CollectionView:
    """A collection with its document and chunk counts."""

    row: CollectionRow
    documents: int
    chunks: int


class CollectionService:
    """Use cases on collections and their documents."""

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        embedder: Embedder,
        index: VectorIndex,
        retrieval: RetrievalService,
        max_name_chars: int,
    ) -> None:
        self._uow = uow
        self._embedder = embedder
        self._index = index
        self._retrieval = retrieval
        self._max_name = max_name_chars

    async def create(self, *, name: str, description: str | None = None) -> CollectionView:
        """Create a collection bound to the configured embedding model."""
        name = name.strip()
        if not name or len(name) > self._max_name:
            raise InvalidInput(f"name must be 1..{self._max_name} characters", field="name")
        async with self._uow(write=True) as tx:
            if await tx.collections.get_by_name(name) is not None:
                raise Conflict(f"a collection named {name!r} already exists", field="name")
            row = CollectionRow(
                name=name,
                description=description,
                embedding_model=self._embedder.model_id,
                embedding_dim=self._embedder.dimension,
            )
            try:
                await tx.collections.add(row)
                await tx.commit()
            except IntegrityError as exc:  # a concurrent create of the same name won
                raise Conflict(f"a collection named {name!r} already exists") from exc
        return CollectionView(row, 0, 0)

    async def get_or_create(self, *, name: str) -> CollectionView:
        """The collection with this name, created if missing (CLI convenience)."""
        async with self._uow() as tx:
            row = await tx.collections.get_by_name(name.strip())
            if row is not None:
                stats = await tx.collections.document_stats([row.id])
                counts = stats.get(row.id, {})
                return CollectionView(row, counts.get("documents", 0), counts.get("chunks", 0))
        return await self.create(name=name)

    async def get(self, collection_id: str) -> CollectionView:
        """One collection with counts."""
        async with self._uow() as tx:
            row = await tx.collections.get(collection_id)
            if row is None:
                raise NotFound(f"collection {collection_id} not found")
            counts = (await tx.collections.document_stats([row.id])).get(row.id, {})
        return CollectionView(row, counts.get("documents", 0), counts.get("chunks", 0))

    async def resolve(self, ref: str) -> CollectionView:
        """A collection by id or by name."""
        async with self._uow() as tx:
            row = await tx.collections.get(ref) or await tx.collections.get_by_name(ref)
            if row is None:
                raise NotFound(f"collection {ref!r} not found")
            counts = (await tx.collections.document_stats([row.id])).get(row.id, {})
        return CollectionView(row, counts.get("documents", 0), counts.get("chunks", 0))

    async def page(self, *, limit: int, cursor: str | None) -> Page[CollectionView]:
        """Collections with counts: two statements whatever the page size."""
        async with self._uow() as tx:
            page = await tx.collections.page(limit=limit, cursor=cursor)
            stats = await tx.collections.document_stats([r.id for r in page.items])
        views = [
            CollectionView(
                r, stats.get(r.id, {}).get("documents", 0), stats.get(r.id, {}).get("chunks", 0)
            )
            for r in page.items
        ]
        return Page(views, page.next_cursor)

    async def delete(self, collection_id: str) -> None:
        """Delete a collection with its documents, chunks and jobs; drop its index copy."""
        async with self._retrieval.collection_lock(collection_id):
            async with self._uow(write=True) as tx:
                row = await tx.collections.get(collection_id)
                if row is None or not await tx.collections.delete(collection_id):
                    raise NotFound(f"collection {collection_id} not found")
                gone_version = row.version + 1
                await tx.commit()
            await self._index.drop(collection_id)
        # Searches cached for any scope with this collection must not be served again.
        await self._retrieval.collection_changed(collection_id, gone_version)

    async def documents(
        self, collection_id: str, *, limit: int, cursor: str | None, status: str | None = None
    ) -> Page[DocumentRow]:
        """Documents of a collection."""
        async with self._uow() as tx:
            if await tx.collections.get(collection_id) is None:
                raise NotFound(f"collection {collection_id} not found")
            return await tx.documents.page(collection_id, limit=limit, cursor=cursor, status=status)

    async def document(self, document_id: str) -> DocumentRow:
        """One document."""
        async with self._uow() as tx:
            row = await tx.documents.get(document_id)
        if row is None:
            raise NotFound(f"document {document_id} not found")
        return row

    async def delete_document(self, document_id: str) -> None:
        """Delete a document and remove its chunks from the keyword and vector indexes."""
        doc = await self.document(document_id)
        cid = doc.collection_id
        async with self._retrieval.collection_lock(cid):
            async with self._uow(write=True) as tx:
                # Re-read under the lock: it (or its collection) may have gone meanwhile.
                if await tx.documents.get(document_id) is None:
                    raise NotFound(f"document {document_id} not found")
                removed = await tx.documents.delete(document_id)
                version = await tx.collections.bump_version(cid)
                await tx.commit()
            # Outside the database writer lock (the index may be large).
            if self._index.version(cid) == version - 1:
                await self._index.remove(cid, ids=removed, version=version)
        await self._retrieval.collection_changed(cid, version)

    async def job(self, job_id: str) -> tuple[JobRow, list[JobItemRow]]:
        """A job with its items (bytes not loaded)."""
        async with self._uow() as tx:
            job = await tx.jobs.get(job_id)
            if job is None:
                raise NotFound(f"job {job_id} not found")
            items = await tx.jobs.items(job_id)
        return job, items

    async def cancel_job(self, job_id: str) -> tuple[JobRow, list[JobItemRow]]:
        """Cancel a job; return it with its items.

        A queued job is ``cancelled`` at once. A running one is flagged and its worker stops
        before its next file, then marks it ``cancelled``; files already stored stay stored
        (each file is its own transaction). Raises NotFound, or Conflict if already finished.
        """
        async with self._uow(write=True) as tx:
            outcome = await tx.jobs.cancel(job_id)
            if outcome is None:
                job = await tx.jobs.get(job_id)
                if job is None:
                    raise NotFound(f"job {job_id} not found")
                raise Conflict(f"job {job_id} has already finished ({job.status})")
            await tx.commit()
        return await self.job(job_id)


def collection_dict(view: CollectionView) -> dict[str, Any]:
    """Plain representation shared by the CLI and tests."""
    return {
        "id": view.row.id,
        "name": view.row.name,
        "documents": view.documents,
        "chunks": view.chunks,
        "embedding_model": view.row.embedding_model,
    }
