"""Chat sessions and their messages."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.db.models import MessageRow, SessionRow
from parley.errors import InvalidInput
from parley.repositories.pagination import Page, decode_cursor, encode_cursor, keyset_page


class SessionRepository:
    """Queries on sessions and messages."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: SessionRow) -> SessionRow:
        """Stage a new session."""
        self.session.add(row)
        await self.session.flush()
        return row

    async def get(self, session_id: str) -> SessionRow | None:
        """One session by id."""
        return await self.session.get(SessionRow, session_id)

    async def page(self, *, limit: int, cursor: str | None) -> Page[SessionRow]:
        """Sessions, newest first."""
        return await keyset_page(
            self.session,
            select(SessionRow),
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

    async def delete(self, session_id: str) -> bool:
        """Delete a session and (cascade) its messages."""
        result = await self.session.execute(delete(SessionRow).where(SessionRow.id == session_id))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def with_recent_messages(
        self, session_id: str, *, limit: int
    ) -> tuple[SessionRow | None, list[MessageRow]]:
        """The session and its last ``limit`` messages (oldest first) in ONE statement."""
        recent = (
            select(MessageRow.id)
            .where(MessageRow.session_id == session_id)
            .order_by(MessageRow.id.desc())
            .limit(limit)
            .scalar_subquery()
        )
        stmt = (
            select(SessionRow, MessageRow)
            .outerjoin(MessageRow, MessageRow.id.in_(recent))
            .where(SessionRow.id == session_id)
            .order_by(MessageRow.id)
        )
        rows = (await self.session.execute(stmt)).all()
        if not rows:
            return None, []
        return rows[0][0], [m for _, m in rows if m is not None]

    async def messages_page(
        self, session_id: str, *, limit: int, cursor: str | None
    ) -> Page[MessageRow]:
        """Messages of a session, oldest first, after ``cursor``."""
        stmt = select(MessageRow).where(MessageRow.session_id == session_id)
        if cursor:
            (after,) = decode_cursor(cursor, arity=1)
            if not isinstance(after, int):
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

    async def add_messages(self, rows: Sequence[dict[str, Any]]) -> dict[str, int]:
        """Insert messages in ONE multi-row statement; return their ids by role.

        Rows must share the same keys. RETURNING order is not guaranteed across backends and
        asking SQLAlchemy to sort splits the batch, so ids are matched back by role instead.
        """
        if len({r["role"] for r in rows}) != len(rows):
            raise ValueError("add_messages takes at most one message per role")
        # render_nulls keeps None-valued columns in the statement, so the rows batch into a
        # single INSERT instead of one statement per distinct set of non-null columns.
        stmt = (
            insert(MessageRow)
            .returning(MessageRow.id, MessageRow.role)
            .execution_options(render_nulls=True)
        )
        result = await self.session.execute(stmt, list(rows))
        return {role: int(mid) for mid, role in result.all()}
