"""Chat sessions: create, list, inspect, delete, page through messages."""

from __future__ import annotations

from dataclasses import dataclass

from parley.db.models import MessageRow, SessionRow
from parley.domain.auth import Principal
from parley.errors import InvalidInput, NotFound
from parley.providers.memory.base import TurnStore
from parley.repositories.pagination import Page
from parley.repositories.text import require_storable
from parley.services.access import resolve_collections
from parley.services.uow import UnitOfWorkFactory
from parley.settings import LimitSettings


@dataclass(slots=True)
class SessionView:
    """A session with its message count."""

    row: SessionRow
    message_count: int


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
        async with self._uow(write=True) as tx:
            resolved = await resolve_collections(tx, actor, ids, field="collection_ids")
            row = await tx.sessions.add(
                SessionRow(collection_ids=resolved, title=title, owner_id=actor.user_id)
            )
            await tx.commit()
        return SessionView(row, 0)

    async def get(self, session_id: str, *, actor: Principal) -> SessionView:
        """One of the actor's sessions with its message count."""
        async with self._uow() as tx:
            row = await tx.sessions.get(session_id, viewer=actor.viewer)
            if row is None:
                raise NotFound(f"session {session_id} not found")
            counts = await tx.sessions.message_counts([row.id])
        return SessionView(row, counts.get(row.id, 0))

    async def page(self, *, actor: Principal, limit: int, cursor: str | None) -> Page[SessionView]:
        """The actor's sessions (all for admins), newest first, with message counts."""
        async with self._uow() as tx:
            page = await tx.sessions.page(limit=limit, cursor=cursor, viewer=actor.viewer)
            counts = await tx.sessions.message_counts([r.id for r in page.items])
        return Page([SessionView(r, counts.get(r.id, 0)) for r in page.items], page.next_cursor)

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
