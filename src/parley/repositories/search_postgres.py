"""PostgreSQL hybrid search: pgvector nearest neighbours and full-text ranking in ONE statement."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    bindparam,
    cast,
    func,
    literal_column,
    null,
    select,
    union,
)
from sqlalchemy.dialects.postgresql import REGCONFIG
from sqlalchemy.ext.asyncio import AsyncConnection

from parley.repositories.search import (
    HybridResult,
    candidate_source,
    query_terms,
)
from parley.repositories.search import (
    chunk_columns as _c,
)


def hnsw_index_sql(dimension: int) -> str:
    """DDL of the HNSW index for one embedding dimension.

    The column is an unsized ``vector`` (collections may use different models), so the index
    is on ``embedding::vector(dim)`` for the rows of that dimension; queries use the same
    expression and predicate so the planner picks it.
    """
    return (
        f"CREATE INDEX IF NOT EXISTS ix_chunks_embedding_hnsw_{int(dimension)} ON chunks "
        f"USING hnsw ((embedding::vector({int(dimension)})) vector_cosine_ops) "
        f"WHERE vector_dims(embedding) = {int(dimension)}"
    )


def tsquery_text(query: str) -> str | None:
    """OR of the query's word terms for ``to_tsquery`` (terms are ``\\w+`` only: no syntax)."""
    terms = query_terms(query)
    return " | ".join(terms) if terms else None


async def hybrid_postgres(
    conn: AsyncConnection,
    *,
    query: str,
    collection_ids: Sequence[str],
    vector: np.ndarray,
    dense_limit: int,
    keyword_limit: int,
    conditions: Sequence[ColumnElement[bool]],
    language: str,
) -> HybridResult:
    """Dense and keyword candidates, ranked and hydrated, in one round trip."""
    dimension = int(vector.shape[-1])
    tsq = tsquery_text(query)
    stmt = _statement(dimension, tsq is not None, tuple(conditions))
    params: dict[str, Any] = {
        "cids": list(collection_ids),
        "qv": np.asarray(vector, dtype=np.float32),
        "dk": dense_limit,
    }
    if tsq is not None:
        params.update(tq=tsq, kk=keyword_limit, lang=language)
    result = HybridResult()
    dense: list[tuple[float, int]] = []
    keyword: list[tuple[float, int]] = []
    for row in (await conn.execute(stmt, params)).all():
        result.rows[row.id] = row
        if row.dist is not None:
            dense.append((float(row.dist), row.id))
        if row.rank is not None:
            keyword.append((-float(row.rank), row.id))
    dense.sort()  # cosine distance: lower is better
    keyword.sort()  # ts_rank_cd negated: lower is better
    result.dense = [cid for _, cid in dense]
    result.keyword = [cid for _, cid in keyword]
    return result


def _statement(
    dimension: int, with_keyword: bool, conditions: tuple[ColumnElement[bool], ...]
) -> Select[Any]:
    if not conditions:
        return _plain(dimension, with_keyword)
    return _build(dimension, with_keyword, conditions)


@lru_cache(maxsize=8)
def _plain(dimension: int, with_keyword: bool) -> Select[Any]:
    # Unfiltered searches (the chat hot path) reuse one statement per dimension.
    return _build(dimension, with_keyword, ())


def _build(
    dimension: int, with_keyword: bool, conditions: Sequence[ColumnElement[bool]]
) -> Select[Any]:
    from pgvector.sqlalchemy import VECTOR

    vector_type = VECTOR(dimension)
    where = [_c.collection_id.in_(bindparam("cids", expanding=True)), *conditions]
    distance: Any = cast(_c.embedding, vector_type).op("<=>", return_type=Float())(
        bindparam("qv", type_=vector_type)
    )
    dense = (
        select(_c.id.label("id"), distance.label("dist"))
        .where(*where, func.vector_dims(_c.embedding) == literal_column(str(int(dimension))))
        .order_by(distance)
        .limit(bindparam("dk"))
        .cte("dense")
    )
    joined, columns = candidate_source()
    columns = [*columns, dense.c.dist]
    if not with_keyword:
        return select(*columns, null().label("rank")).select_from(
            joined.join(dense, dense.c.id == _c.id)
        )
    tsquery = func.to_tsquery(bindparam("lang", type_=REGCONFIG), bindparam("tq"))
    rank: Any = func.ts_rank_cd(_c.tsv, tsquery)
    keyword = (
        select(_c.id.label("id"), rank.label("rank"))
        .where(*where, _c.tsv.op("@@")(tsquery))
        .order_by(rank.desc())
        .limit(bindparam("kk"))
        .cte("kw")
    )
    return (
        select(*columns, keyword.c.rank)
        .select_from(
            joined.outerjoin(dense, dense.c.id == _c.id).outerjoin(keyword, keyword.c.id == _c.id)
        )
        # One IN over a UNION lets the planner probe the primary key; an OR of two INs
        # scanned the whole chunks table on every search.
        .where(_c.id.in_(union(select(dense.c.id), select(keyword.c.id))))
    )
