"""Chat sessions: create, list, inspect, delete, page through messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from parley.db.models import MessageRow, SessionRow
from parley.domain.auth import Principal
from parley.domain.names import without_format_chars
from parley.errors import InvalidInput, NotFound
from parley.providers.memory.base import TurnStore
from parley.repositories.pagination import Page
from parley.repositories.text import require_storable
from parley.services.access import resolve_collections
from parley.services.uow import UnitOfWork, UnitOfWorkFactory
from parley.settings import LimitSettings


@dataclass(slots=True)
class SessionView:
    """A session with its message count and the collections it covers that the viewer may
    read now (a grant withdrawn since, or an admin's session seen with a key without the
    ``admin`` scope, hides the others' ids: they are not the viewer's to know)."""

    row: SessionRow
    message_count: int
    collection_ids: list[str]


class SessionService:
    """Use cases on sessions (turns themselves are in ``ChatService``)."""

    def __init__(
        self, *, uow: UnitOfWorkFactory, limits: LimitSettings, shared: TurnStore | None = None
    ) -> None:
        self._uow = uow
        self._limits = limits
        self._shared = shared

    async def create(
        self, *, actor: Principal, collection_ids: list[str], title: str | None = None
    ) -> SessionView:
        """Start a session owned by the actor over collections it may read.

        Each collection is given by id or by name (see ``access.pick_collection``); the
        session stores ids.
        """
        ids = list(dict.fromkeys(collection_ids))
        if not ids:
            raise InvalidInput("at least one collection id is required", field="collection_ids")
        if len(ids) > self._limits.max_collections_per_query:
            raise InvalidInput(
                f"at most {self._limits.max_collections_per_query} collections per session",
                field="collection_ids",
            )
        if title is not None and len(title) > self._limits.max_name_chars:
            raise InvalidInput(f"title is limited to {self._limits.max_name_chars} characters")
        require_storable(title, field="title")
        if title is not None:
            # A title is only displayed, never looked up: clean it (bidi overrides, zero-width
            # characters) rather than refuse a first question that happens to hold one.
            title = without_format_chars(title)
        async with self._uow(write=True) as tx:
            resolved = await resolve_collections(tx, actor, ids, field="collection_ids")
            row = await tx.sessions.add(
                SessionRow(collection_ids=resolved, title=title, owner_id=actor.user_id)
            )
            await tx.commit()
        return SessionView(row, 0, list(resolved))

    async def get(self, session_id: str, *, actor: Principal) -> SessionView:
        """One of the actor's sessions with its message count."""
        async with self._uow() as tx:
            row = await tx.sessions.get(session_id, viewer=actor.viewer)
            if row is None:
                raise NotFound(f"session {session_id} not found")
            counts = await tx.sessions.message_counts([row.id])
            readable = await _readable(tx, actor, [row])
        return _view(row, counts, readable)

    async def page(self, *, actor: Principal, limit: int, cursor: str | None) -> Page[SessionView]:
        """The actor's sessions (all for admins), newest first, with message counts."""
        async with self._uow() as tx:
            page = await tx.sessions.page(limit=limit, cursor=cursor, viewer=actor.viewer)
            counts = await tx.sessions.message_counts([r.id for r in page.items])
            readable = await _readable(tx, actor, page.items)
        return Page([_view(r, counts, readable) for r in page.items], page.next_cursor)

    async def delete(self, session_id: str, *, actor: Principal) -> None:
        """Delete one of the actor's sessions and its messages."""
        async with self._uow(write=True) as tx:
            if await tx.sessions.get(session_id, viewer=actor.viewer) is None:
                raise NotFound(f"session {session_id} not found")
            await tx.sessions.carry_usage(session_id)
            if not await tx.sessions.delete(session_id, viewer=actor.viewer):
                raise NotFound(f"session {session_id} not found")
            await tx.commit()
        if self._shared is not None:
            await self._shared.forget_session(session_id)

    async def messages(
        self, session_id: str, *, actor: Principal, limit: int, cursor: str | None
    ) -> Page[MessageRow]:
        """Messages of one of the actor's sessions, oldest first."""
        async with self._uow() as tx:
            if await tx.sessions.get(session_id, viewer=actor.viewer) is None:
                raise NotFound(f"session {session_id} not found")
            return await tx.sessions.messages_page(session_id, limit=limit, cursor=cursor)


async def _readable(
    tx: UnitOfWork, actor: Principal, rows: Sequence[SessionRow]
) -> set[str] | None:
    """Which collections of ``rows`` the actor may read now, in one statement; None: all."""
    if actor.viewer is None:
        return None
    ids = list(dict.fromkeys(cid for row in rows for cid in row.collection_ids))
    return {c.id for c in await tx.collections.get_many(ids, viewer=actor.viewer)}


def _view(row: SessionRow, counts: dict[str, int], readable: set[str] | None) -> SessionView:
    ids = [c for c in row.collection_ids if readable is None or c in readable]
    return SessionView(row, counts.get(row.id, 0), ids)
