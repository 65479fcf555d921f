"""Collections: CRUD, document counts and the version counter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.db.models import CollectionGrantRow, CollectionRow, DocumentRow
from parley.repositories.pagination import Page, keyset_page
from parley.repositories.text import storable


class CollectionKey(NamedTuple):
    """What name resolution needs to know about a collection."""

    id: str
    name: str
    owner_id: str | None


def access_clause(viewer: str, *, write: bool = False) -> ColumnElement[bool]:
    """Collections ``viewer`` owns or was granted (``write``: a write grant)."""
    granted = select(CollectionGrantRow.collection_id).where(CollectionGrantRow.user_id == viewer)
    if write:
        granted = granted.where(CollectionGrantRow.permission == "write")
    return or_(CollectionRow.owner_id == viewer, CollectionRow.id.in_(granted))


class CollectionRepository:
    """Queries on collections."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: CollectionRow) -> CollectionRow:
        """Stage a new collection (flushed so constraint errors surface here)."""
        self.session.add(row)
        await self.session.flush()
        return row

    async def get(
        self, collection_id: str, *, viewer: str | None = None, write: bool = False
    ) -> CollectionRow | None:
        """One collection by id; with ``viewer`` only if that user may read (or write) it.

        ``viewer=None`` means no restriction (admins, the system principal, internal use).
        """
        if not storable(collection_id):
            return None
        if viewer is None:
            return await self.session.get(CollectionRow, collection_id)
        stmt = select(CollectionRow).where(
            CollectionRow.id == collection_id, access_clause(viewer, write=write)
        )
        return await self.session.scalar(stmt)

    async def get_by_name(self, name: str, *, owner_id: str | None) -> CollectionRow | None:
        """One collection by name within one owner's namespace (None = ownerless)."""
        if not storable(name):
            return None
        owner = (
            CollectionRow.owner_id.is_(None)
            if owner_id is None
            else CollectionRow.owner_id == owner_id
        )
        return await self.session.scalar(
            select(CollectionRow).where(CollectionRow.name == name, owner)
        )

    async def get_many(
        self, collection_ids: Sequence[str], *, viewer: str | None = None
    ) -> list[CollectionRow]:
        """Collections by id, in one statement (missing or hidden ids are simply absent)."""
        collection_ids = [c for c in collection_ids if storable(c)]
        if not collection_ids:
            return []
        stmt = select(CollectionRow).where(CollectionRow.id.in_(collection_ids))
        if viewer is not None:
            stmt = stmt.where(access_clause(viewer))
        return list((await self.session.scalars(stmt)).all())

    async def matching(self, refs: Sequence[str], *, viewer: str | None) -> list[CollectionKey]:
        """Collections whose id *or* name is one of ``refs``, in one statement.

        With ``viewer`` only those that user may read, so hidden collections never take part
        in name resolution; ``viewer=None`` means no restriction.
        """
        refs = [r for r in refs if storable(r)]
        if not refs:
            return []
        stmt = select(CollectionRow.id, CollectionRow.name, CollectionRow.owner_id).where(
            or_(CollectionRow.id.in_(refs), CollectionRow.name.in_(refs))
        )
        if viewer is not None:
            stmt = stmt.where(access_clause(viewer))
        rows = (await self.session.execute(stmt)).all()
        return [CollectionKey(cid, name, owner) for cid, name, owner in rows]

    async def readable_ids(self, viewer: str) -> set[str]:
        """Every collection id ``viewer`` may read (owned or granted), in one statement."""
        stmt = select(CollectionRow.id).where(access_clause(viewer))
        return set((await self.session.scalars(stmt)).all())

    async def page(
        self, *, limit: int, cursor: str | None, viewer: str | None = None
    ) -> Page[CollectionRow]:
        """Collections ``viewer`` may read (all with None), oldest first."""
        stmt = select(CollectionRow)
        if viewer is not None:
            stmt = stmt.where(access_clause(viewer))
        return await keyset_page(
            self.session,
            stmt,
            created=CollectionRow.created_at,
            ident=CollectionRow.id,
            limit=limit,
            cursor=cursor,
        )

    async def document_stats(self, collection_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """Document and chunk counts per collection, in one grouped statement (no N+1)."""
        if not collection_ids:
            return {}
        stmt = (
            select(
                DocumentRow.collection_id,
                func.count(DocumentRow.id),
                func.coalesce(func.sum(DocumentRow.chunk_count), 0),
            )
            .where(DocumentRow.collection_id.in_(list(collection_ids)))
            .group_by(DocumentRow.collection_id)
        )
        rows = (await self.session.execute(stmt)).all()
        return {cid: {"documents": int(n), "chunks": int(c)} for cid, n, c in rows}

    async def index_state(self, collection_ids: Sequence[str]) -> dict[str, tuple[int, str]]:
        """(version, embedding model) of each existing collection, in one statement."""
        if not collection_ids:
            return {}
        stmt = select(CollectionRow.id, CollectionRow.version, CollectionRow.embedding_model).where(
            CollectionRow.id.in_(list(collection_ids))
        )
        rows = (await self.session.execute(stmt)).all()
        return {cid: (int(v), model) for cid, v, model in rows}

    async def bump_version(self, collection_id: str) -> int:
        """Increment the version in the current transaction and return the new value."""
        stmt = (
            update(CollectionRow)
            .where(CollectionRow.id == collection_id)
            .values(version=CollectionRow.version + 1, updated_at=func.now())
            .returning(CollectionRow.version)
        )
        return int((await self.session.execute(stmt)).scalar_one())

    async def delete(self, collection_id: str) -> bool:
        """Delete a collection; documents, chunks, jobs cascade. True if it existed."""
        if not storable(collection_id):
            return False
        result = await self.session.execute(
            delete(CollectionRow).where(CollectionRow.id == collection_id)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def put_grant(
        self, collection_id: str, user_id: str, permission: str, *, by: str | None
    ) -> CollectionGrantRow:
        """Create or change a user's grant on a collection."""
        row = await self.session.scalar(
            select(CollectionGrantRow).where(
                CollectionGrantRow.collection_id == collection_id,
                CollectionGrantRow.user_id == user_id,
            )
        )
        if row is None:
            row = CollectionGrantRow(
                collection_id=collection_id, user_id=user_id, permission=permission, created_by=by
            )
            self.session.add(row)
        else:
            row.permission = permission
        await self.session.flush()
        return row

    async def grants(self, collection_id: str) -> list[CollectionGrantRow]:
        """Grants on a collection, oldest first."""
        stmt = (
            select(CollectionGrantRow)
            .where(CollectionGrantRow.collection_id == collection_id)
            .order_by(CollectionGrantRow.id)
        )
        return list((await self.session.scalars(stmt)).all())

    async def delete_grant(self, collection_id: str, user_id: str) -> bool:
        """Remove a user's grant."""
        if not storable(collection_id, user_id):
            return False
        result = await self.session.execute(
            delete(CollectionGrantRow).where(
                CollectionGrantRow.collection_id == collection_id,
                CollectionGrantRow.user_id == user_id,
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
