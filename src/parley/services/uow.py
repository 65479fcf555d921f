"""Unit of work: one use case, one session, one commit."""

from __future__ import annotations

from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from parley.repositories.collections import CollectionRepository
from parley.repositories.documents import DocumentRepository
from parley.repositories.jobs import JobRepository
from parley.repositories.search import SearchRepository
from parley.repositories.sessions import SessionRepository


class UnitOfWork:
    """Opens a session, exposes repositories on it, commits only when told to.

    Leaving the block without ``commit()`` (or with an exception) rolls everything back, so a
    failed use case never leaves partial state behind.
    """

    session: AsyncSession
    collections: CollectionRepository
    documents: DocumentRepository
    jobs: JobRepository
    search: SearchRepository
    sessions: SessionRepository

    def __init__(self, factory: async_sessionmaker[AsyncSession]) -> None:
        self._factory = factory

    async def __aenter__(self) -> UnitOfWork:
        self.session = self._factory()
        self.collections = CollectionRepository(self.session)
        self.documents = DocumentRepository(self.session)
        self.jobs = JobRepository(self.session)
        self.search = SearchRepository(self.session)
        self.sessions = SessionRepository(self.session)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # close() alone ends the transaction without expiring loaded objects, so results stay
        # readable after the block; on an error, roll back explicitly first.
        try:
            if exc_type is not None and self.session.in_transaction():
                await self.session.rollback()
        finally:
            await self.session.close()

    async def commit(self) -> None:
        """Commit everything staged in this unit of work."""
        await self.session.commit()


class UnitOfWorkFactory:
    """Makes units of work; services receive this rather than a session."""

    def __init__(self, factory: async_sessionmaker[AsyncSession]) -> None:
        self._factory = factory

    def __call__(self) -> UnitOfWork:
        """A fresh unit of work (use as ``async with uow() as tx``)."""
        return UnitOfWork(self._factory)
