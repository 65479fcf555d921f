"""Chat sessions: create, list, inspect, delete, page through messages."""

from __future__ import annotations

from dataclasses import dataclass

from parley.db.models import MessageRow, SessionRow
from parley.errors import InvalidInput, NotFound
from parley.providers.memory.base import TurnStore
from parley.repositories.pagination import Page
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

    async def create(self, *, collection_ids: list[str], title: str | None = None) -> SessionView:
        """Start a session over existing collections, given by id or by name."""
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
        async with self._uow(write=True) as tx:
            found = {c.id for c in await tx.collections.get_many(ids)}
            by_name = await tx.collections.ids_by_name([r for r in ids if r not in found])
            resolved: list[str] = []
            for ref in ids:
                cid = ref if ref in found else by_name.get(ref)
                if cid is None:
                    raise NotFound(f"collection {ref!r} not found", field="collection_ids")
                resolved.append(cid)
            resolved = list(dict.fromkeys(resolved))
            row = await tx.sessions.add(SessionRow(collection_ids=resolved, title=title))
            await tx.commit()
        return SessionView(row, 0)

    async def get(self, session_id: str) -> SessionView:
        """One session with its message count."""
        async with self._uow() as tx:
            row = await tx.sessions.get(session_id)
            if row is None:
                raise NotFound(f"session {session_id} not found")
            counts = await tx.sessions.message_counts([row.id])
        return SessionView(row, counts.get(row.id, 0))

    async def page(self, *, limit: int, cursor: str | None) -> Page[SessionView]:
        """Sessions, newest first, with message counts (two statements per page)."""
        async with self._uow() as tx:
            page = await tx.sessions.page(limit=limit, cursor=cursor)
            counts = await tx.sessions.message_counts([r.id for r in page.items])
        return Page([SessionView(r, counts.get(r.id, 0)) for r in page.items], page.next_cursor)

    async def delete(self, session_id: str) -> None:
        """Delete a session and its messages."""
        async with self._uow(write=True) as tx:
            if not await tx.sessions.delete(session_id):
                raise NotFound(f"session {session_id} not found")
            await tx.commit()
        if self._shared is not None:
            await self._shared.forget_session(session_id)

    async def messages(
        self, session_id: str, *, limit: int, cursor: str | None
    ) -> Page[MessageRow]:
        """Messages of a session, oldest first."""
        async with self._uow() as tx:
            if await tx.sessions.get(session_id) is None:
                raise NotFound(f"session {session_id} not found")
            return await tx.sessions.messages_page(session_id, limit=limit, cursor=cursor)
