"""Chat sessions and their messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, delete, func, insert, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from parley.db.models import MessageRow, SessionRow, UsageCarryoverRow
from parley.domain.chat import HistoryMessage
from parley.errors import InvalidInput
from parley.repositories.pagination import Page, decode_cursor, encode_cursor, keyset_page
from parley.repositories.text import storable


@dataclass(frozen=True, slots=True)
class SessionHead:
    """What a chat turn needs to know about its session besides the history."""

    owner_id: str | None
    scope: list[str]


class SessionRepository:
    """Queries on sessions and messages."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: SessionRow) -> SessionRow:
        """Stage a new session."""
        self.session.add(row)
        await self.session.flush()
        return row

    async def get(self, session_id: str, *, viewer: str | None = None) -> SessionRow | None:
        """One session by id; with ``viewer``, only if that user owns it."""
        if not storable(session_id):
            return None
        row = await self.session.get(SessionRow, session_id)
        if row is not None and viewer is not None and row.owner_id != viewer:
            return None
        return row

    async def page(
        self, *, limit: int, cursor: str | None, viewer: str | None = None
    ) -> Page[SessionRow]:
        """Sessions (``viewer``'s own, or all), newest first."""
        stmt = select(SessionRow)
        if viewer is not None:
            stmt = stmt.where(SessionRow.owner_id == viewer)
        return await keyset_page(
            self.session,
            stmt,
            created=SessionRow.created_at,
            ident=SessionRow.id,
            limit=limit,
            cursor=cursor,
            descending=True,
        )

    async def message_counts(self, session_ids: Sequence[str]) -> dict[str, int]:
        """Message count per session in one grouped statement."""
        if not session_ids:
            return {}
        stmt = (
            select(MessageRow.session_id, func.count(MessageRow.id))
            .where(MessageRow.session_id.in_(list(session_ids)))
            .group_by(MessageRow.session_id)
        )
        return {sid: int(n) for sid, n in (await self.session.execute(stmt)).all()}

    async def delete(self, session_id: str, *, viewer: str | None = None) -> bool:
        """Delete a session (``viewer``'s own only) and, by cascade, its messages."""
        if not storable(session_id):
            return False
        stmt = delete(SessionRow).where(SessionRow.id == session_id)
        if viewer is not None:
            stmt = stmt.where(SessionRow.owner_id == viewer)
        result = await self.session.execute(stmt)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def recent_history(
        self, session_id: str, *, limit: int
    ) -> tuple[SessionHead | None, list[HistoryMessage]]:
        """The session's owner and collection ids (None if it does not exist) and its last
        ``limit`` messages, oldest first, in ONE statement.

        Only the columns a prompt needs are read (no ORM objects, no sources JSON): this runs
        on every chat turn.
        """
        if not storable(session_id):
            return None, []
        conn = await self.session.connection()
        rows = (await conn.execute(_HISTORY, {"sid": session_id, "n": limit})).all()
        if not rows:
            return None, []
        history = [
            HistoryMessage(role=role, content=content, token_count=tokens)
            for _, _, role, content, tokens in rows
            if role in ("user", "assistant") and content
        ]
        return SessionHead(owner_id=rows[0][0], scope=list(rows[0][1])), history

    async def messages_page(
        self, session_id: str, *, limit: int, cursor: str | None
    ) -> Page[MessageRow]:
        """Messages of a session, oldest first, after ``cursor``."""
        stmt = select(MessageRow).where(MessageRow.session_id == session_id)
        if cursor:
            (after,) = decode_cursor(cursor, arity=1)
            if isinstance(after, bool) or not isinstance(after, int) or not 0 <= after < 2**63:
                raise InvalidInput("malformed cursor", field="cursor")
            stmt = stmt.where(MessageRow.id > after)
        rows = list(
            (await self.session.scalars(stmt.order_by(MessageRow.id).limit(limit + 1))).all()
        )
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor([rows[-1].id])
        return Page(items=rows, next_cursor=next_cursor)

    async def usage_since(
        self, owner_id: str, *, month_start: datetime, day_start: datetime
    ) -> tuple[int, int, int, int]:
        """(day input, day output, month input, month output) tokens of a user's turns,
        stored or deleted, in one statement over the (owner_id, created_at) indexes."""
        _c = UsageCarryoverRow.__table__.c
        parts = union_all(
            select(_m.created_at, _m.input_tokens, _m.output_tokens).where(
                _m.owner_id == owner_id, _m.created_at >= month_start
            ),
            select(_c.created_at, _c.input_tokens, _c.output_tokens).where(
                _c.owner_id == owner_id, _c.created_at >= month_start
            ),
        ).subquery()
        today = parts.c.created_at >= day_start
        stmt = select(
            func.coalesce(func.sum(case((today, parts.c.input_tokens), else_=0)), 0),
            func.coalesce(func.sum(case((today, parts.c.output_tokens), else_=0)), 0),
            func.coalesce(func.sum(parts.c.input_tokens), 0),
            func.coalesce(func.sum(parts.c.output_tokens), 0),
        )
        row = (await self.session.execute(stmt)).one()
        return int(row[0]), int(row[1]), int(row[2]), int(row[3])

    async def carry_usage(self, session_id: str) -> None:
        """Before a session is deleted: keep its messages' token usage (quotas stay honest)."""
        _c = UsageCarryoverRow.__table__.c
        billed = select(_m.owner_id, _m.created_at, _m.input_tokens, _m.output_tokens).where(
            _m.session_id == session_id,
            _m.owner_id.is_not(None),
            (_m.input_tokens + _m.output_tokens) > 0,
        )
        await self.session.execute(
            insert(cast(Table, UsageCarryoverRow.__table__)).from_select(
                [_c.owner_id, _c.created_at, _c.input_tokens, _c.output_tokens], billed
            )
        )

    async def add_messages(self, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
        """Insert messages in ONE multi-row statement; return their ids by role.

        Rows must share the same keys. RETURNING order is not guaranteed across backends, so
        ids are matched back by role. Core (not the ORM bulk path): this runs on every turn.
        """
        if len({r["role"] for r in rows}) != len(rows):
            raise ValueError("add_messages takes at most one message per role")
        conn = await self.session.connection()
        result = await conn.execute(_INSERT_MESSAGES, list(rows))
        return {role: int(mid) for mid, role in result.all()}


_s = SessionRow.__table__.c
_m = MessageRow.__table__.c
_RECENT = (
    select(_m.id)
    .where(_m.session_id == bindparam("sid"))
    .order_by(_m.id.desc())
    .limit(bindparam("n"))
    .scalar_subquery()
)
# Built once: the hot-path statements are plain Core with bound parameters.
_HISTORY = (
    select(_s.owner_id, _s.collection_ids, _m.role, _m.content, _m.token_count)
    .select_from(SessionRow.__table__.outerjoin(MessageRow.__table__, _m.id.in_(_RECENT)))
    .where(_s.id == bindparam("sid"))
    .order_by(_m.id)
)
_INSERT_MESSAGES = insert(cast(Table, MessageRow.__table__)).returning(_m.id, _m.role)
