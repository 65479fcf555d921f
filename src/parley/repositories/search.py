"""Hybrid retrieval SQL: keyword ranking and hydration of dense hits in one statement."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    Text,
    bindparam,
    column,
    literal_column,
    or_,
    select,
    table,
    type_coerce,
)
from sqlalchemy.ext.asyncio import AsyncSession

from parley.db.models import ChunkRow, DocumentRow
from parley.domain.retrieval import RetrievedChunk
from parley.errors import InvalidInput

_WORD = re.compile(r"\w+", re.UNICODE)
_FILTER_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_DOCUMENT_FILTERS = {"document_id": "id", "mime_type": "mime_type", "source": "source"}
_MAX_FILTER_VALUES = 100
_MAX_QUERY_TERMS = 32

_c = ChunkRow.__table__.c
_d = DocumentRow.__table__.c
_fts = table("chunks_fts", column("rowid"))


def fts_expression(query: str) -> str | None:
    """Turn free text into a safe FTS5 query: each word quoted, OR-ed (BM25 ranks them).

    Quoting every term means user text can never inject FTS syntax (``NEAR``, ``*``, ``:``).
    """
    terms: list[str] = []
    for word in _WORD.findall(query.lower()):
        if word not in terms:
            terms.append(word)
        if len(terms) >= _MAX_QUERY_TERMS:
            break
    if not terms:
        return None
    return " OR ".join(f'"{t}"' for t in terms)


def filter_conditions(filters: dict[str, Any]) -> list[ColumnElement[bool]]:
    """SQL conditions for metadata filters: document fields or chunk metadata equality/IN."""
    conditions: list[ColumnElement[bool]] = []
    for key, raw in filters.items():
        if not _FILTER_KEY.match(key):
            raise InvalidInput(f"invalid filter key {key!r}", field="filters")
        values = raw if isinstance(raw, list) else [raw]
        if not values or len(values) > _MAX_FILTER_VALUES:
            raise InvalidInput(f"filter {key!r} needs 1..{_MAX_FILTER_VALUES} values")
        if any(v is None or isinstance(v, dict | list) for v in values):
            raise InvalidInput(f"filter {key!r} values must be strings, numbers or booleans")
        if key in _DOCUMENT_FILTERS:
            col = _d[_DOCUMENT_FILTERS[key]]
            conditions.append(col.in_([str(v) for v in values]))
            continue
        sample = values[0]
        element = _c.meta[key]
        accessor: Any
        if isinstance(sample, bool):
            accessor = element.as_boolean()
        elif isinstance(sample, int):
            accessor = element.as_integer()
        elif isinstance(sample, float):
            accessor = element.as_float()
        else:
            accessor = element.as_string()
            values = [str(v) for v in values]
        conditions.append(accessor.in_(values))
    return conditions


class SearchRepository:
    """The SQL side of hybrid search."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def hybrid(
        self,
        *,
        query: str,
        collection_ids: Sequence[str],
        dense_ids: Sequence[int],
        keyword_limit: int,
        filters: dict[str, Any],
    ) -> tuple[dict[int, Row[Any]], list[int]]:
        """Rank by keyword and hydrate dense hits in ONE statement.

        Returns candidate rows by chunk id (dense hits failing the filters are absent; turn
        the ones you keep into chunks with :func:`to_chunk`) and the keyword ranking (chunk
        ids, best first).
        """
        expression = fts_expression(query)
        if expression is None and not dense_ids:
            return {}, []
        stmt = _statement(expression is not None, filter_conditions(filters))
        params: dict[str, Any] = {"cids": list(collection_ids), "dense": list(dense_ids)}
        if expression is not None:
            params.update(q=expression, k=keyword_limit)
        conn = await self.session.connection()
        rows = (await conn.execute(stmt, params)).all()
        by_id: dict[int, Row[Any]] = {}
        scored: list[tuple[float, int]] = []
        for row in rows:
            by_id[row.id] = row
            if row.bm25 is not None:
                scored.append((float(row.bm25), row.id))
        scored.sort()  # bm25() is lower-is-better
        return by_id, [cid for _, cid in scored]


def to_chunk(row: Row[Any]) -> RetrievedChunk:
    """A candidate row as a chunk; metadata JSON is decoded only for rows that are kept."""
    return RetrievedChunk(
        chunk_id=row.id,
        collection_id=row.collection_id,
        document_id=row.document_id,
        document_title=row.title,
        source=row.source,
        text=row.text,
        token_count=row.token_count,
        position=row.position,
        meta=json.loads(row.meta) if row.meta else {},
    )


def _build(with_keyword: bool, conditions: Sequence[ColumnElement[bool]]) -> Select[Any]:
    where = [_c.collection_id.in_(bindparam("cids", expanding=True)), *conditions]
    joined = ChunkRow.__table__.join(DocumentRow.__table__, _d.id == _c.document_id)
    columns: list[Any] = [
        _c.id,
        _c.collection_id,
        _c.document_id,
        _c.text,
        _c.token_count,
        _c.position,
        # Raw JSON text: decoding ~50 candidates' metadata to keep 6 would be wasted work.
        type_coerce(_c.meta, Text).label("meta"),
        _d.title,
        _d.source,
    ]
    dense = _c.id.in_(bindparam("dense", expanding=True))
    if not with_keyword:
        return (
            select(*columns, literal_column("NULL").label("bm25"))
            .select_from(joined)
            .where(dense, *where)
        )
    bm25: Any = literal_column("bm25(chunks_fts)")
    kw = (
        select(_c.id.label("id"), bm25.label("bm25"))
        .select_from(_fts.join(joined, _c.id == _fts.c.rowid))
        .where(literal_column("chunks_fts").op("MATCH")(bindparam("q")), *where)
        .order_by(bm25)
        .limit(bindparam("k"))
        .cte("kw")
    )
    return (
        select(*columns, kw.c.bm25)
        .select_from(joined.outerjoin(kw, kw.c.id == _c.id))
        .where(or_(_c.id.in_(select(kw.c.id)), dense), *where)
    )


# Without filters (the chat hot path) the statement never changes: build it once.
_PLAIN = {True: _build(True, ()), False: _build(False, ())}


def _statement(with_keyword: bool, conditions: Sequence[ColumnElement[bool]]) -> Select[Any]:
    return _build(with_keyword, conditions) if conditions else _PLAIN[with_keyword]
