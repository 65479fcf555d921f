"""Chat sessions and their messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    Table,
    bindparam,
    case,
    delete,
    func,
    insert,
    select,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, with_expression

from parley.db.models import MessageRow, SessionRow, UsageCarryoverRow
from parley.domain.chat import HistoryMessage
from parley.errors import InvalidInput
from parley.repositories.pagination import Page, decode_cursor, encode_cursor, keyset_page
from parley.repositories.text import storable


@dataclass(frozen=True, slots=True)
class StoredQuestion:
    """A stored message looked up to be retried."""

    owner_id: str | None
    role: str
    content: str
    answered: bool


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
        """The session's owner and collection ids (None if it does not exist) and the
        conversation in its last ``limit`` messages, oldest first, in ONE statement.

        Only the columns a prompt needs are read (no ORM objects, no sources JSON): this runs
        on every chat turn. Questions without an answer (pending, failed) are left out, and
        each answer follows its question even when two turns overlapped.
        """
        if not storable(session_id):
            return None, []
        conn = await self.session.connection()
        rows = (await conn.execute(_HISTORY, {"sid": session_id, "n": limit})).all()
        if not rows:
            return None, []
        return SessionHead(owner_id=rows[0][0], scope=list(rows[0][1])), _conversation(rows)

    async def messages_page(
        self, session_id: str, *, limit: int, cursor: str | None
    ) -> Page[MessageRow]:
        """Messages of a session, oldest first, after ``cursor``; each with ``answered``."""
        stmt = (
            select(MessageRow)
            .options(with_expression(MessageRow.answered, _ANSWERED))
            .where(MessageRow.session_id == session_id)
        )
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

    async def question(self, session_id: str, message_id: int) -> StoredQuestion | None:
        """A message of the session with its session's owner and whether it has an answer."""
        if not storable(session_id):
            return None
        stmt = (
            select(SessionRow.owner_id, MessageRow.role, MessageRow.content, _ANSWERED)
            .join(SessionRow, SessionRow.id == MessageRow.session_id)
            .where(MessageRow.id == message_id, MessageRow.session_id == session_id)
        )
        row = (await self.session.execute(stmt)).first()
        if row is None:
            return None
        owner_id, role, content, answered = row
        return StoredQuestion(owner_id=owner_id, role=role, content=content, answered=answered)

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

    async def add_message(self, row: dict[str, Any]) -> int:
        """Insert one message and return its id. Core, not the ORM: this runs on every turn."""
        conn = await self.session.connection()
        return int((await conn.execute(_INSERT_MESSAGE, row)).scalar_one())

    async def mark_failed(
        self, message_id: int, *, code: str, input_tokens: int = 0, output_tokens: int = 0
    ) -> None:
        """Record on a question why its generation failed, and bill the tokens that the
        failed turn still spent (e.g. its follow-up rewrite)."""
        conn = await self.session.connection()
        await conn.execute(
            update(cast(Table, MessageRow.__table__))
            .where(_m.id == message_id)
            .values(
                error_code=code,
                input_tokens=_m.input_tokens + input_tokens,
                output_tokens=_m.output_tokens + output_tokens,
            )
        )


def _conversation(rows: Sequence[Any]) -> list[HistoryMessage]:
    """``_HISTORY`` rows as prompt history: answered questions, each followed by its answer."""
    asked = {mid for _, _, mid, role, *_ in rows if role == "user"}
    answers = {reply_to: row for row in rows if (reply_to := row[6]) in asked}
    history: list[HistoryMessage] = []
    for _, _, mid, role, content, tokens, reply_to in rows:
        if role == "user" and mid in answers:
            history.append(HistoryMessage(role="user", content=content, token_count=tokens))
            answer = answers[mid]
            if answer[4]:  # empty answers were stored before they were refused
                history.append(
                    HistoryMessage(role="assistant", content=answer[4], token_count=answer[5])
                )
        elif role == "assistant" and reply_to not in asked and content:
            # Its question is older than the window: the answer alone still gives context.
            history.append(HistoryMessage(role="assistant", content=content, token_count=tokens))
    return history


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
    select(
        _s.owner_id, _s.collection_ids, _m.id, _m.role, _m.content, _m.token_count, _m.reply_to_id
    )
    .select_from(SessionRow.__table__.outerjoin(MessageRow.__table__, _m.id.in_(_RECENT)))
    .where(_s.id == bindparam("sid"))
    .order_by(_m.id)
)
_INSERT_MESSAGE = insert(cast(Table, MessageRow.__table__)).returning(_m.id)
_answers = aliased(MessageRow)
# Correlated on the outer message: does an answer point to it? (Uses ux_messages_reply_to_id.)
_ANSWERED = select(_answers.id).where(_answers.reply_to_id == MessageRow.id).exists()
