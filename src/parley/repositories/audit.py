"""The audit log: append and filter."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from parley.db.models import AuditRow
from parley.errors import InvalidInput
from parley.repositories.pagination import Page, decode_cursor, encode_cursor
from parley.repositories.text import storable


class AuditRepository:
    """Queries on the audit log."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: AuditRow) -> None:
        """Stage an audit record."""
        self.session.add(row)
        await self.session.flush()

    async def page(
        self,
        *,
        limit: int,
        cursor: str | None,
        action: str | None = None,
        actor_id: str | None = None,
        target_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> Page[AuditRow]:
        """Records, newest first, filtered."""
        if not storable(action, actor_id, target_id):
            return Page([], None)  # no record can match text no database can hold
        stmt = select(AuditRow)
        if action:
            # "user.*" matches every user action.
            if action.endswith(".*"):
                stmt = stmt.where(AuditRow.action.startswith(action[:-1], autoescape=True))
            else:
                stmt = stmt.where(AuditRow.action == action)
        if actor_id:
            stmt = stmt.where(AuditRow.actor_id == actor_id)
        if target_id:
            stmt = stmt.where(AuditRow.target_id == target_id)
        if since:
            stmt = stmt.where(AuditRow.created_at >= since)
        if until:
            stmt = stmt.where(AuditRow.created_at < until)
        if cursor:
            (before,) = decode_cursor(cursor, arity=1)
            if isinstance(before, bool) or not isinstance(before, int) or not 0 < before < 2**63:
                raise InvalidInput("malformed cursor", field="cursor")
            stmt = stmt.where(AuditRow.id < before)
        rows = list(
            (await self.session.scalars(stmt.order_by(AuditRow.id.desc()).limit(limit + 1))).all()
        )
        next_cursor = None
        if len(rows) > limit:
            rows = rows[:limit]
            next_cursor = encode_cursor([rows[-1].id])
        return Page(rows, next_cursor)
