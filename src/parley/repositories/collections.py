"""Collections: CRUD, document counts and the version counter."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.db.models import CollectionRow, DocumentRow
from parley.repositories.pagination import Page, keyset_page


class CollectionRepository:
    """Queries on collections."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: CollectionRow) -> CollectionRow:
        """Stage a new collection (flushed so constraint errors surface here)."""
        self.session.add(row)
        await self.session.flush()
        return row

    async def get(self, collection_id: str) -> CollectionRow | None:
        """One collection by id."""
        return await self.session.get(CollectionRow, collection_id)

    async def get_by_name(self, name: str) -> CollectionRow | None:
        """One collection by its unique name."""
        return await self.session.scalar(select(CollectionRow).where(CollectionRow.name == name))

    async def get_many(self, collection_ids: Sequence[str]) -> list[CollectionRow]:
        """Collections by id, in one statement (missing ids are simply absent)."""
        if not collection_ids:
            return []
        stmt = select(CollectionRow).where(CollectionRow.id.in_(list(collection_ids)))
        return list((await self.session.scalars(stmt)).all())

    async def ids_by_name(self, names: Sequence[str]) -> dict[str, str]:
        """Map collection names to ids, in one statement (unknown names are absent)."""
        if not names:
            return {}
        stmt = select(CollectionRow.name, CollectionRow.id).where(
            CollectionRow.name.in_(list(names))
        )
        return {name: cid for name, cid in (await self.session.execute(stmt)).all()}

    async def page(self, *, limit: int, cursor: str | None) -> Page[CollectionRow]:
        """Collections, oldest first."""
        return await keyset_page(
            self.session,
            select(CollectionRow),
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
        result = await self.session.execute(
            delete(CollectionRow).where(CollectionRow.id == collection_id)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
