"""Collections and documents: create, list, inspect, delete."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError

from parley.db.models import CollectionGrantRow, CollectionRow, DocumentRow, JobItemRow, JobRow
from parley.domain.auth import Principal
from parley.domain.names import require_visible
from parley.errors import Conflict, InvalidInput, NotFound
from parley.providers.embeddings.base import Embedder
from parley.providers.vectors.base import VectorIndex
from parley.repositories.pagination import Page
from parley.repositories.text import require_storable
from parley.services.access import AccessPolicy
from parley.services.retrieval import RetrievalService
from parley.services.uow import UnitOfWork, UnitOfWorkFactory


@dataclass(slots=True)
class CollectionView:
    """A collection with its document and chunk counts."""

    row: CollectionRow
    documents: int
    chunks: int


class CollectionService:
    """Use cases on collections, their documents, jobs and grants.

    Every method takes the acting :class:`Principal`. A resource the actor may not see
    raises ``NotFound`` exactly as if it did not exist, so ids cannot be probed; one the
    actor may see but not change (a read grant) raises ``NotFound`` too for writes.
    """

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        embedder: Embedder,
        index: VectorIndex,
        retrieval: RetrievalService,
        access: AccessPolicy,
        max_name_chars: int,
    ) -> None:
        self._uow = uow
        self._embedder = embedder
        self._index = index
        self._retrieval = retrieval
        self._access = access
        self._max_name = max_name_chars

    async def create(
        self, *, actor: Principal, name: str, description: str | None = None
    ) -> CollectionView:
        """Create a collection owned by the actor, bound to the configured embedding model.

        A name holding an invisible or control character (a bidi override, a zero-width
        space…) is refused: it could display as another name (see ``require_visible``).
        """
        name = name.strip()
        if not name or len(name) > self._max_name:
            raise InvalidInput(f"name must be 1..{self._max_name} characters", field="name")
        require_storable(name, field="name")
        require_visible(name, field="name")
        require_storable(description, field="description")
        async with self._uow(write=True) as tx:
            if await tx.collections.get_by_name(name, owner_id=actor.user_id) is not None:
                raise Conflict(f"you already have a collection named {name!r}", field="name")
            row = CollectionRow(
                name=name,
                description=description,
                owner_id=actor.user_id,
                embedding_model=self._embedder.model_id,
                embedding_dim=self._embedder.dimension,
            )
            try:
                await tx.collections.add(row)
                await tx.commit()
            except IntegrityError as exc:  # a concurrent create of the same name won
                raise Conflict(f"you already have a collection named {name!r}") from exc
        if actor.user_id is not None:
            self._access.invalidate(actor.user_id)
        return CollectionView(row, 0, 0)

    async def get_or_create(self, *, actor: Principal, name: str) -> CollectionView:
        """The actor's collection with this name, created if missing (CLI convenience)."""
        async with self._uow() as tx:
            row = await tx.collections.get_by_name(name.strip(), owner_id=actor.user_id)
            if row is not None:
                return await self._view(tx, row)
        return await self.create(actor=actor, name=name)

    async def get(self, collection_id: str, *, actor: Principal) -> CollectionView:
        """One collection the actor may read, with counts."""
        async with self._uow() as tx:
            row = await tx.collections.get(collection_id, viewer=actor.viewer)
            if row is None:
                raise NotFound(f"collection {collection_id} not found")
            return await self._view(tx, row)

    async def resolve(self, ref: str, *, actor: Principal) -> CollectionView:
        """A readable collection by id or by name (see ``access.pick_collection``)."""
        collection_id = await self.resolve_id(ref, actor=actor)
        return await self.get(collection_id, actor=actor)

    async def resolve_id(self, ref: str, *, actor: Principal) -> str:
        """The id of the readable collection ``ref`` (an id or a name) designates.

        NotFound if none (or only hidden ones) match, Conflict if the name is ambiguous.
        What the actor may then *do* with it is checked by each use case.
        """
        return (await self._access.resolve(actor, [ref]))[0]

    @staticmethod
    async def _view(tx: UnitOfWork, row: CollectionRow) -> CollectionView:
        counts = (await tx.collections.document_stats([row.id])).get(row.id, {})
        return CollectionView(row, counts.get("documents", 0), counts.get("chunks", 0))

    async def page(
        self, *, actor: Principal, limit: int, cursor: str | None
    ) -> Page[CollectionView]:
        """Readable collections with counts: two statements whatever the page size."""
        async with self._uow() as tx:
            page = await tx.collections.page(limit=limit, cursor=cursor, viewer=actor.viewer)
            stats = await tx.collections.document_stats([r.id for r in page.items])
        views = [
            CollectionView(
                r, stats.get(r.id, {}).get("documents", 0), stats.get(r.id, {}).get("chunks", 0)
            )
            for r in page.items
        ]
        return Page(views, page.next_cursor)

    async def delete(self, collection_id: str, *, actor: Principal) -> None:
        """Delete a collection (owner or admin) with its documents, chunks, jobs and grants."""
        async with self._retrieval.collection_lock(collection_id):
            async with self._uow(write=True) as tx:
                row = await tx.collections.get(collection_id)
                if (
                    row is None
                    or not _owns(actor, row)
                    or not await tx.collections.delete(collection_id)
                ):
                    raise NotFound(f"collection {collection_id} not found")
                gone_version = row.version + 1
                await tx.commit()
            await self._index.drop(collection_id)
        self._access.invalidate()
        # Searches cached for any scope with this collection must not be served again.
        await self._retrieval.collection_changed(collection_id, gone_version)

    async def writable(self, collection_id: str, *, actor: Principal) -> CollectionRow:
        """The collection if the actor may add to it (owner, write grant or admin)."""
        async with self._uow() as tx:
            row = await tx.collections.get(collection_id, viewer=actor.viewer, write=True)
        if row is None:
            raise NotFound(f"collection {collection_id} not found")
        return row

    async def documents(
        self,
        collection_id: str,
        *,
        actor: Principal,
        limit: int,
        cursor: str | None,
        status: str | None = None,
    ) -> Page[DocumentRow]:
        """Documents of a readable collection."""
        async with self._uow() as tx:
            if await tx.collections.get(collection_id, viewer=actor.viewer) is None:
                raise NotFound(f"collection {collection_id} not found")
            return await tx.documents.page(collection_id, limit=limit, cursor=cursor, status=status)

    async def document(
        self, document_id: str, *, actor: Principal, write: bool = False
    ) -> DocumentRow:
        """One document of a readable (``write``: writable) collection."""
        async with self._uow() as tx:
            row = await tx.documents.get(document_id)
            if row is not None and actor.viewer is not None:
                visible = await tx.collections.get(
                    row.collection_id, viewer=actor.viewer, write=write
                )
                row = row if visible is not None else None
        if row is None:
            raise NotFound(f"document {document_id} not found")
        return row

    async def delete_document(self, document_id: str, *, actor: Principal) -> None:
        """Delete a document and remove its chunks from the keyword and vector indexes."""
        doc = await self.document(document_id, actor=actor, write=True)
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

    async def job(
        self, job_id: str, *, actor: Principal, write: bool = False
    ) -> tuple[JobRow, list[JobItemRow]]:
        """A job of a readable (``write``: writable) collection, with its items (no bytes)."""
        async with self._uow() as tx:
            job = await tx.jobs.get(job_id)
            if job is not None and actor.viewer is not None:
                visible = await tx.collections.get(
                    job.collection_id, viewer=actor.viewer, write=write
                )
                job = job if visible is not None else None
            if job is None:
                raise NotFound(f"job {job_id} not found")
            items = await tx.jobs.items(job_id)
        return job, items

    async def cancel_job(self, job_id: str, *, actor: Principal) -> tuple[JobRow, list[JobItemRow]]:
        """Cancel a job; return it with its items.

        A queued job is ``cancelled`` at once. A running one is flagged and its worker stops
        before its next file, then marks it ``cancelled``; files already stored stay stored
        (each file is its own transaction). Raises NotFound, or Conflict if already finished.
        """
        await self.job(job_id, actor=actor, write=True)
        async with self._uow(write=True) as tx:
            outcome = await tx.jobs.cancel(job_id)
            if outcome is None:
                job = await tx.jobs.get(job_id)
                if job is None:
                    raise NotFound(f"job {job_id} not found")
                raise Conflict(f"job {job_id} has already finished ({job.status})")
            await tx.commit()
        return await self.job(job_id, actor=actor)

    async def share(
        self,
        collection_id: str,
        *,
        actor: Principal,
        permission: str,
        user_id: str | None = None,
        email: str | None = None,
    ) -> CollectionGrantRow:
        """Grant another user (by id or email) read or write access (owner or admin only).

        Ownership is checked before the user is looked up, so only someone who may share
        this collection learns whether an account exists.
        """
        if permission not in ("read", "write"):
            raise InvalidInput("permission must be 'read' or 'write'", field="permission")
        async with self._uow(write=True) as tx:
            row = await tx.collections.get(collection_id)
            if row is None or not _owns(actor, row):
                raise NotFound(f"collection {collection_id} not found")
            if user_id is not None:
                target = await tx.accounts.user(user_id)
            else:
                target = await tx.accounts.user_by_email((email or "").strip().lower())
            if target is None:
                raise NotFound("user not found", field="user_id" if user_id else "email")
            if target.id == row.owner_id:
                raise InvalidInput("the owner already has full access", field="user_id")
            grant = await tx.collections.put_grant(
                collection_id, target.id, permission, by=actor.user_id
            )
            await tx.commit()
        self._access.invalidate(target.id)
        return grant

    async def grants(self, collection_id: str, *, actor: Principal) -> list[CollectionGrantRow]:
        """Who a collection is shared with (owner or admin only)."""
        async with self._uow() as tx:
            row = await tx.collections.get(collection_id)
            if row is None or not _owns(actor, row):
                raise NotFound(f"collection {collection_id} not found")
            return await tx.collections.grants(collection_id)

    async def unshare(self, collection_id: str, *, actor: Principal, user_id: str) -> None:
        """Withdraw a user's grant (owner or admin only)."""
        async with self._uow(write=True) as tx:
            row = await tx.collections.get(collection_id)
            if row is None or not _owns(actor, row):
                raise NotFound(f"collection {collection_id} not found")
            if not await tx.collections.delete_grant(collection_id, user_id):
                raise NotFound(f"no grant for user {user_id}", field="user_id")
            await tx.commit()
        self._access.invalidate(user_id)


def _owns(actor: Principal, row: CollectionRow) -> bool:
    return actor.sees_all or (actor.user_id is not None and row.owner_id == actor.user_id)


def collection_dict(view: CollectionView) -> dict[str, Any]:
    """Plain representation shared by the CLI and tests."""
    return {
        "id": view.row.id,
        "name": view.row.name,
        "documents": view.documents,
        "chunks": view.chunks,
        "embedding_model": view.row.embedding_model,
    }
