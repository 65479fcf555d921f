"""Documents and their chunks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import numpy as np
from sqlalchemy import bindparam, delete, func, insert, select
from sqlalchemy.dialects.postgresql import REGCONFIG
from sqlalchemy.ext.asyncio import AsyncSession

from parley.db.models import ChunkRow, DocumentRow
from parley.repositories.pagination import Page, keyset_page
from parley.repositories.text import storable


class DocumentRepository:
    """Queries on documents and chunks."""

    def __init__(self, session: AsyncSession, *, search_language: str = "english") -> None:
        self.session = session
        self.search_language = search_language

    async def add(self, row: DocumentRow) -> DocumentRow:
        """Stage a new document."""
        self.session.add(row)
        await self.session.flush()
        return row

    async def get(self, document_id: str) -> DocumentRow | None:
        """One document by id."""
        if not storable(document_id):
            return None
        return await self.session.get(DocumentRow, document_id)

    async def get_by_source(self, collection_id: str, source: str) -> DocumentRow | None:
        """The document of a collection with this source (its relative path), if any."""
        stmt = select(DocumentRow).where(
            DocumentRow.collection_id == collection_id, DocumentRow.source == source
        )
        return await self.session.scalar(stmt)

    async def page(
        self, collection_id: str, *, limit: int, cursor: str | None, status: str | None = None
    ) -> Page[DocumentRow]:
        """Documents of a collection, oldest first."""
        if not storable(status):
            return Page([], None)  # no document has such a status
        stmt = select(DocumentRow).where(DocumentRow.collection_id == collection_id)
        if status:
            stmt = stmt.where(DocumentRow.status == status)
        return await keyset_page(
            self.session,
            stmt,
            created=DocumentRow.created_at,
            ident=DocumentRow.id,
            limit=limit,
            cursor=cursor,
        )

    async def delete(self, document_id: str) -> list[int]:
        """Delete a document and its chunks; return the removed chunk ids (for the indexes)."""
        chunk_ids = await self.delete_chunks(document_id)
        await self.session.execute(delete(DocumentRow).where(DocumentRow.id == document_id))
        return chunk_ids

    async def delete_chunks(self, document_id: str) -> list[int]:
        """Delete the chunks of a document; return their ids."""
        stmt = delete(ChunkRow).where(ChunkRow.document_id == document_id).returning(ChunkRow.id)
        return [int(i) for i in (await self.session.scalars(stmt)).all()]

    async def add_chunks(self, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Insert chunks in one batched statement; return their ids in input order.

        On PostgreSQL the full-text vector is computed by the same INSERT; on SQLite triggers
        maintain the FTS5 index.
        """
        if not rows:
            return []
        stmt = insert(ChunkRow).returning(ChunkRow.id, sort_by_parameter_order=True)
        params = list(rows)
        if self.session.get_bind().dialect.name == "postgresql":
            stmt = stmt.values(
                tsv=func.to_tsvector(
                    bindparam("tsv_language", type_=REGCONFIG), bindparam("tsv_text")
                )
            )
            language = self.search_language
            params = [{**r, "tsv_language": language, "tsv_text": r["text"]} for r in rows]
        result = await self.session.scalars(stmt, params)
        return [int(i) for i in result.all()]

    async def iter_embeddings(
        self, collection_id: str, *, batch: int = 20_000
    ) -> AsyncIterator[tuple[np.ndarray, np.ndarray]]:
        """Stream (ids, float32 matrix) batches of a collection's vectors, by id."""
        last = 0
        while True:
            stmt = (
                select(ChunkRow.id, ChunkRow.embedding)
                .where(ChunkRow.collection_id == collection_id, ChunkRow.id > last)
                .order_by(ChunkRow.id)
                .limit(batch)
            )
            rows = (await self.session.execute(stmt)).all()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
            yield ids, matrix.reshape(len(rows), -1)
            last = int(ids[-1])
