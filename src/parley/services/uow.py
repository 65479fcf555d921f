"""Unit of work: one use case, one session, one commit."""

from __future__ import annotations

import asyncio
from types import TracebackType

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from parley.repositories.accounts import AccountRepository
from parley.repositories.audit import AuditRepository
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
    accounts: AccountRepository
    audit: AuditRepository
    collections: CollectionRepository
    documents: DocumentRepository
    jobs: JobRepository
    search: SearchRepository
    sessions: SessionRepository

    def __init__(
        self,
        factory: async_sessionmaker[AsyncSession],
        write_lock: asyncio.Lock | None = None,
        search_language: str = "english",
    ) -> None:
        self._factory = factory
        self._write_lock = write_lock
        self._language = search_language

    async def __aenter__(self) -> UnitOfWork:
        if self._write_lock is not None:
            await self._write_lock.acquire()
        self.session = self._factory()
        self.accounts = AccountRepository(self.session)
        self.audit = AuditRepository(self.session)
        self.collections = CollectionRepository(self.session)
        self.documents = DocumentRepository(self.session, search_language=self._language)
        self.jobs = JobRepository(self.session)
        self.search = SearchRepository(self.session, search_language=self._language)
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
            try:
                await self.session.close()
            finally:
                if self._write_lock is not None:
                    self._write_lock.release()

    async def commit(self) -> None:
        """Commit everything staged in this unit of work."""
        await self.session.commit()


class UnitOfWorkFactory:
    """Makes units of work; services receive this rather than a session.

    With ``serialize_writes`` (SQLite, which allows one writer at a time) units of work opened
    with ``write=True`` take turns on an in-process lock. Waiters then resume the moment the
    previous writer commits, instead of sleeping in SQLite's busy handler, whose back-off
    (up to 100 ms a step) made the tail latency of concurrent chat turns seconds long.
    """

    def __init__(
        self,
        factory: async_sessionmaker[AsyncSession],
        *,
        serialize_writes: bool = False,
        search_language: str = "english",
    ) -> None:
        self._factory = factory
        self._write_lock = asyncio.Lock() if serialize_writes else None
        self._language = search_language

    def __call__(self, *, write: bool = False) -> UnitOfWork:
        """A fresh unit of work (``async with uow(write=True) as tx`` when it will write)."""
        return UnitOfWork(self._factory, self._write_lock if write else None, self._language)
