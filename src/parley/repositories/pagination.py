"""Keyset pagination with opaque cursors (stable under inserts, no OFFSET scans)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from parley.errors import InvalidInput
from parley.repositories.text import all_storable

T = TypeVar("T")


@dataclass(slots=True)
class Page(Generic[T]):
    """One page of results and the cursor of the next page (None on the last)."""

    items: list[T]
    next_cursor: str | None


def encode_cursor(values: Sequence[Any]) -> str:
    """Opaque, URL-safe cursor from the sort key of the last item."""
    raw = [v.isoformat() if isinstance(v, datetime) else v for v in values]
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *, arity: int) -> list[Any]:
    """Inverse of :func:`encode_cursor`; a malformed cursor is bad input, not a crash."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput("malformed cursor", field="cursor") from exc
    if not isinstance(values, list) or len(values) != arity or not all_storable(values):
        raise InvalidInput("malformed cursor", field="cursor")
    return values


def as_utc(value: datetime, *, field: str) -> datetime:
    """``value`` in UTC (naive = UTC already). An aware time whose UTC date falls outside
    years 1..9999 (``0001-01-01T00:00+14:00``) cannot be represented: bad input, not a
    crash when the column type converts it."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise InvalidInput(f"{field} is out of range", field=field) from exc


async def keyset_page(
    session: AsyncSession,
    stmt: Select[Any],
    *,
    created: InstrumentedAttribute[datetime],
    ident: InstrumentedAttribute[Any],
    limit: int,
    cursor: str | None,
    descending: bool = False,
) -> Page[Any]:
    """Run ``stmt`` ordered by (created, id) after ``cursor``; one statement per page."""
    if cursor:
        created_raw, ident_value = decode_cursor(cursor, arity=2)
        if not isinstance(ident_value, str) or len(ident_value) > 64:
            raise InvalidInput("malformed cursor", field="cursor")
        try:
            created_value = as_utc(datetime.fromisoformat(created_raw), field="cursor")
        except (TypeError, ValueError) as exc:
            raise InvalidInput("malformed cursor", field="cursor") from exc
        if descending:
            cond = or_(created < created_value, and_(created == created_value, ident < ident_value))
        else:
            cond = or_(created > created_value, and_(created == created_value, ident > ident_value))
        stmt = stmt.where(cond)
    order = (created.desc(), ident.desc()) if descending else (created.asc(), ident.asc())
    rows = list((await session.scalars(stmt.order_by(*order).limit(limit + 1))).all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        last = rows[-1]
        next_cursor = encode_cursor([getattr(last, created.key), getattr(last, ident.key)])
    return Page(items=rows, next_cursor=next_cursor)
