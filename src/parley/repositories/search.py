"""Hybrid retrieval SQL, shared parts: query terms, metadata filters, rows → chunks.

The dialect-specific statements live in ``search_sqlite.py`` (FTS5 + hydration of the dense
hits found in process) and ``search_postgres.py`` (pgvector + tsvector, both in SQL). Either
way a search is ONE statement.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy import ColumnElement, Row, Text, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from parley.db.models import ChunkRow, DocumentRow
from parley.domain.retrieval import RetrievedChunk
from parley.errors import InvalidInput
from parley.repositories.stopwords import STOPWORDS
from parley.repositories.text import all_storable

_WORD = re.compile(r"\w+", re.UNICODE)
_FILTER_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_DOCUMENT_FILTERS = {"document_id": "id", "mime_type": "mime_type", "source": "source"}
_MAX_FILTER_VALUES = 100
_MAX_QUERY_TERMS = 32

chunk_columns = ChunkRow.__table__.c
document_columns = DocumentRow.__table__.c


@dataclass(slots=True)
class HybridResult:
    """Candidate rows by chunk id plus each retriever's ranking (chunk ids, best first)."""

    rows: dict[int, Row[Any]] = field(default_factory=dict)
    dense: list[int] = field(default_factory=list)
    keyword: list[int] = field(default_factory=list)


def query_terms(query: str) -> list[str]:
    """Distinct lower-cased word terms of a query (at most 32), without function words.

    Only ``\\w`` characters survive, so no term can carry FTS5 or tsquery syntax. Stopwords
    ("how", "do", "i", "the"…) are dropped unless the query holds nothing else.
    """
    terms: list[str] = []
    for word in _WORD.findall(query.lower()):
        if word not in terms:
            terms.append(word)
    content = [t for t in terms if t not in STOPWORDS]
    return (content or terms)[:_MAX_QUERY_TERMS]


def fts_expression(query: str) -> str | None:
    """A safe FTS5 query: each word quoted and OR-ed (BM25 ranks them)."""
    terms = query_terms(query)
    return " OR ".join(f'"{t}"' for t in terms) if terms else None


def filter_conditions(
    filters: dict[str, Any], *, dialect: str = "sqlite"
) -> list[ColumnElement[bool]]:
    """Conditions on ``chunks`` for metadata filters.

    Document fields (``document_id``, ``mime_type``, ``source``) become a sub-select on
    documents, so the conditions never need a join; other keys match chunk metadata. On
    PostgreSQL metadata values are compared as their JSON text: a cast of ``meta->>'k'`` to a
    number would fail on any chunk whose value for that key is not numeric.
    """
    conditions: list[ColumnElement[bool]] = []
    for key, raw in filters.items():
        if not _FILTER_KEY.match(key):
            raise InvalidInput(f"invalid filter key {key!r}", field="filters")
        values = raw if isinstance(raw, list) else [raw]
        if not values or len(values) > _MAX_FILTER_VALUES:
            raise InvalidInput(f"filter {key!r} needs 1..{_MAX_FILTER_VALUES} values")
        if any(v is None or isinstance(v, dict | list) for v in values):
            raise InvalidInput(f"filter {key!r} values must be strings, numbers or booleans")
        if not all_storable(values):
            raise InvalidInput(
                f"filter {key!r} values must not contain NUL or unpaired surrogates",
                field="filters",
            )
        if key in _DOCUMENT_FILTERS:
            column = document_columns[_DOCUMENT_FILTERS[key]]
            docs = select(document_columns.id).where(column.in_([str(v) for v in values]))
            conditions.append(chunk_columns.document_id.in_(docs))
            continue
        sample = values[0]
        element = chunk_columns.meta[key]
        accessor: Any
        if dialect == "postgresql":
            texts = [json.dumps(v) if not isinstance(v, str) else v for v in values]
            conditions.append(element.as_string().in_(texts))
            continue
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


def candidate_source() -> tuple[Any, list[Any]]:
    """The chunks ⋈ documents join and the columns a search candidate carries (both dialects).

    Metadata comes back as raw JSON text: decoding ~80 candidates' metadata to keep 6 would be
    wasted work, so :func:`to_chunk` decodes it for the kept ones only.
    """
    joined = ChunkRow.__table__.join(
        DocumentRow.__table__, document_columns.id == chunk_columns.document_id
    )
    columns: list[Any] = [
        chunk_columns.id,
        chunk_columns.collection_id,
        chunk_columns.document_id,
        chunk_columns.text,
        chunk_columns.token_count,
        chunk_columns.position,
        type_coerce(chunk_columns.meta, Text).label("meta"),
        document_columns.title,
        document_columns.source,
    ]
    return joined, columns


def to_chunk(row: Row[Any]) -> RetrievedChunk:
    """A candidate row as a chunk; metadata JSON is decoded only for rows that are kept."""
    meta = row.meta
    if isinstance(meta, str):
        meta = json.loads(meta) if meta else {}
    return RetrievedChunk(
        chunk_id=row.id,
        collection_id=row.collection_id,
        document_id=row.document_id,
        document_title=row.title,
        source=row.source,
        text=row.text,
        token_count=row.token_count,
        position=row.position,
        meta=meta or {},
    )


class SearchRepository:
    """The SQL side of hybrid search, for the session's dialect."""

    def __init__(self, session: AsyncSession, *, search_language: str = "english") -> None:
        self.session = session
        self.search_language = search_language

    async def hybrid(
        self,
        *,
        query: str,
        collection_ids: Sequence[str],
        keyword_limit: int,
        filters: dict[str, Any],
        dense_ids: Sequence[int] = (),
        vector: np.ndarray | None = None,
        dense_limit: int = 0,
    ) -> HybridResult:
        """Run the one-statement hybrid search.

        SQLite: ``dense_ids`` (found in process) are hydrated and keyword-ranked with FTS5.
        PostgreSQL: ``vector`` is searched with pgvector (``dense_limit`` nearest) and the
        query with full-text search, both in the same statement.
        """
        conn = await self.session.connection()
        if conn.dialect.name == "postgresql":
            from parley.repositories.search_postgres import hybrid_postgres

            if vector is None:
                raise ValueError("a query vector is required on PostgreSQL")
            return await hybrid_postgres(
                conn,
                query=query,
                collection_ids=collection_ids,
                vector=vector,
                dense_limit=dense_limit,
                keyword_limit=keyword_limit,
                conditions=filter_conditions(filters, dialect="postgresql"),
                language=self.search_language,
            )
        from parley.repositories.search_sqlite import hybrid_sqlite

        return await hybrid_sqlite(
            conn,
            query=query,
            collection_ids=collection_ids,
            dense_ids=dense_ids,
            keyword_limit=keyword_limit,
            conditions=filter_conditions(filters),
        )
