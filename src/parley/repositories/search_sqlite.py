"""SQLite hybrid search: FTS5/BM25 ranking plus hydration of in-process dense hits."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    column,
    literal_column,
    or_,
    select,
    table,
)
from sqlalchemy.ext.asyncio import AsyncConnection

from parley.db.models import ChunkRow
from parley.repositories.search import (
    HybridResult,
    candidate_source,
    fts_expression,
)
from parley.repositories.search import (
    chunk_columns as _c,
)

_fts = table("chunks_fts", column("rowid"))


async def hybrid_sqlite(
    conn: AsyncConnection,
    *,
    query: str,
    collection_ids: Sequence[str],
    dense_ids: Sequence[int],
    keyword_limit: int,
    conditions: Sequence[ColumnElement[bool]],
) -> HybridResult:
    """Keyword-rank and hydrate in one statement; dense ranking keeps the caller's order."""
    expression = fts_expression(query)
    if expression is None and not dense_ids:
        return HybridResult()
    stmt = _statement(expression is not None, conditions)
    params: dict[str, Any] = {"cids": list(collection_ids), "dense": list(dense_ids)}
    if expression is not None:
        params.update(q=expression, k=keyword_limit)
    result = HybridResult()
    scored: list[tuple[float, int]] = []
    for row in (await conn.execute(stmt, params)).all():
        result.rows[row.id] = row
        if row.bm25 is not None:
            scored.append((float(row.bm25), row.id))
    scored.sort()  # bm25() is lower-is-better
    result.keyword = [cid for _, cid in scored]
    result.dense = [cid for cid in dense_ids if cid in result.rows]
    return result


def _build(with_keyword: bool, conditions: Sequence[ColumnElement[bool]]) -> Select[Any]:
    where = [_c.collection_id.in_(bindparam("cids", expanding=True)), *conditions]
    joined, columns = candidate_source()
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
        .select_from(_fts.join(ChunkRow.__table__, _c.id == _fts.c.rowid))
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
