"""Ingestion: accept uploads as durable jobs, then parse → chunk → embed → store per document.

Parsing and chunking happen in parser processes (``services/ingest/process.py``), each file
within its budget (``PARLEY_INGEST_LIMITS__*``); embedding happens here, in batches off the
event loop; ``services/ingest/store.py`` writes each file's outcome.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import structlog

from parley.db.models import JobItemRow, JobRow
from parley.domain.auth import Principal
from parley.domain.names import clean_relative_path
from parley.errors import InvalidInput, LimitExceeded, NotFound, ParseError, PayloadTooLarge
from parley.providers.embeddings.base import Embedder, Vectors
from parley.providers.vectors.base import VectorIndex
from parley.repositories.text import all_storable
from parley.services.ingest.heap import TRIM_AFTER_BYTES, release_free_memory
from parley.services.ingest.prepare import PrepareRequest
from parley.services.ingest.preparer import AbortCheck, DocumentPreparer, PrepareAborted
from parley.services.ingest.store import DocumentStore
from parley.services.ingest.store import ItemOutcome as ItemOutcome  # part of this API
from parley.services.ingest.watch import JobWatch
from parley.services.parsing import detect_mime
from parley.services.retrieval import RetrievalService
from parley.services.uow import UnitOfWorkFactory
from parley.settings import LimitSettings

log = structlog.get_logger(__name__)

_EMBED_SLICE = 512  # texts per embed() call of one file


@dataclass(slots=True)
class UploadedFile:
    """A file handed to ingestion: its name, bytes and the declared content type."""

    filename: str
    data: bytes
    declared_mime: str | None = None


ProgressCallback = Callable[[ItemOutcome], None]


def sanitize_filename(name: str, *, max_chars: int = 200) -> str:
    """The document source for an upload's name: a cleaned relative path; never empty.

    A document is keyed by this path within its collection, so ``a/README.md`` and
    ``b/README.md`` stay two documents (see ``clean_relative_path`` for the rules).
    ``max_chars`` caps each path segment; the whole is capped at the column width.
    """
    return clean_relative_path(name, max_segment_chars=max_chars)


class IngestionService:
    """Turns uploaded files into searchable chunks, durably and idempotently."""

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        embedder: Embedder,
        index: VectorIndex,
        retrieval: RetrievalService,
        preparer: DocumentPreparer,
        limits: LimitSettings,
        on_submit: Callable[[], None] | None = None,
    ) -> None:
        self._uow = uow
        self._embedder = embedder
        self._store = DocumentStore(uow=uow, index=index, retrieval=retrieval)
        self._preparer = preparer
        self._limits = limits
        self._on_submit = on_submit

    async def aclose(self) -> None:
        """Stop the parser processes (run the job loops' ``stop`` first)."""
        await self._preparer.aclose()

    async def submit(
        self,
        *,
        actor: Principal,
        collection_id: str,
        files: Sequence[UploadedFile],
        metadata: dict[str, Any] | None = None,
    ) -> JobRow:
        """Validate every file, then record one queued job holding them all.

        The actor must be able to write to the collection (owner, write grant or admin);
        otherwise it is ``NotFound``, as if the collection did not exist.

        Validation happens before anything is written: one oversized or mis-typed file
        rejects the request and leaves no job, document or item behind.
        """
        if not files:
            raise InvalidInput("no files were uploaded", field="files")
        if metadata and not all_storable([*metadata, *metadata.values()]):
            raise InvalidInput(
                "metadata must not contain NUL characters or unpaired surrogates", field="metadata"
            )
        if len(files) > self._limits.max_files_per_request:
            raise InvalidInput(
                f"at most {self._limits.max_files_per_request} files per request", field="files"
            )
        # Sniffing and hashing cost milliseconds per file (more for large ones): off the loop.
        items = await asyncio.to_thread(self._validated_items, files, metadata)
        async with self._uow(write=True) as tx:
            if await tx.collections.get(collection_id, viewer=actor.viewer, write=True) is None:
                raise NotFound(f"collection {collection_id} not found")
            job = JobRow(
                collection_id=collection_id, owner_id=actor.user_id, total_items=len(items)
            )
            await tx.jobs.add(job, [])
            for item in items:
                item.job_id = job.id
            tx.session.add_all(items)
            await tx.commit()
        log.info("ingestion_job_queued", job_id=job.id, files=len(items))
        if self._on_submit is not None:
            self._on_submit()
        return job

    def _validated_items(
        self, files: Sequence[UploadedFile], metadata: dict[str, Any] | None
    ) -> list[JobItemRow]:
        """One job item per file, or the first file's error (nothing is written here)."""
        items: list[JobItemRow] = []
        seen: set[str] = set()
        for upload in files:
            name = sanitize_filename(upload.filename, max_chars=self._limits.max_name_chars)
            if len(upload.data) > self._limits.max_upload_bytes:
                raise PayloadTooLarge(
                    f"{name} is {len(upload.data)} bytes; the limit is "
                    f"{self._limits.max_upload_bytes} bytes per file",
                    field="files",
                )
            if not upload.data:
                raise InvalidInput(f"{name} is empty", field="files")
            if name in seen:
                raise InvalidInput(f"{name} appears twice in this upload", field="files")
            seen.add(name)
            mime = detect_mime(upload.data, filename=name, declared_mime=upload.declared_mime)
            items.append(
                JobItemRow(
                    filename=name,
                    declared_mime=mime,
                    size_bytes=len(upload.data),
                    content_hash=hashlib.sha256(upload.data).hexdigest(),
                    content=upload.data,
                    meta=dict(metadata or {}),
                )
            )
        return items

    async def run_job(
        self,
        job: JobRow,
        *,
        worker_id: str,
        progress: ProgressCallback | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> str:
        """Process the pending items of a claimed job; return its terminal status.

        Before each file the job row is read again: a cancellation requested meanwhile ends
        the job ``cancelled`` there (files already stored stay stored, each having been its own
        transaction), and a job this worker no longer holds is left alone (``"lost"``). When
        ``should_stop()`` turns true (the worker is shutting down) it returns ``"interrupted"``
        between two files, leaving the job for the caller to hand back. A long parse or
        embedding is abandoned within a second or two on any of these (its parser process is
        killed, the file stays pending) rather than finished first.
        """
        cancelled = False
        watch = JobWatch(uow=self._uow, job_id=job.id, worker_id=worker_id, should_stop=should_stop)
        while True:
            if should_stop is not None and should_stop():
                return "interrupted"
            async with self._uow() as tx:
                current = await tx.jobs.get(job.id)
                if current is None or current.worker_id != worker_id:
                    return "lost"  # deleted, or re-claimed after our lease lapsed
                if current.status != "running":
                    return "lost"  # ended meanwhile by someone else
                if current.cancel_requested:
                    cancelled = True
                    break
                item = await tx.jobs.next_pending_item(job.id)
            if item is None:
                break
            try:
                outcome = await self._process_item(
                    job.collection_id, item, owner_id=job.owner_id, abort=watch
                )
            except PrepareAborted as exc:
                if exc.reason == "stop":
                    return "interrupted"
                if exc.reason == "lost":
                    return "lost"
                cancelled = True
                break
            if item.size_bytes >= TRIM_AFTER_BYTES:
                await asyncio.to_thread(release_free_memory)
            if progress is not None:
                progress(outcome)
        async with self._uow(write=True) as tx:
            current = await tx.jobs.get(job.id)
            if current is None:
                return "lost"
            failed, total = current.failed_items, current.total_items
            if cancelled:
                status = "cancelled"
                error: str | None = (
                    f"cancelled after {current.processed_items} of {total} files; "
                    "files already stored stay stored"
                )
                await tx.jobs.drop_pending_items(job.id)
            else:
                status = "failed" if failed and failed == total else "succeeded"
                error = f"{failed} of {total} files failed" if failed else None
            if not await tx.jobs.finish(job.id, status=status, error=error, worker_id=worker_id):
                return "lost"
            await tx.commit()
        log.info("ingestion_job_finished", job_id=job.id, status=status)
        return status

    async def _process_item(
        self,
        collection_id: str,
        item: JobItemRow,
        *,
        owner_id: str | None,
        abort: AbortCheck | None = None,
    ) -> ItemOutcome:
        data = item.content or b""
        async with self._uow() as tx:
            existing = await tx.documents.get_by_source(collection_id, item.filename)
        unchanged = existing is not None and existing.content_hash == item.content_hash
        if existing is not None and unchanged and existing.status == "ready":
            async with self._uow(write=True) as tx:
                await tx.jobs.finish_item(item.id, status="skipped", document_id=existing.id)
                await tx.commit()
            return ItemOutcome(item.filename, "skipped", document_id=existing.id)
        request = PrepareRequest(data, item.filename, item.declared_mime)
        try:
            # Parsing and chunking run in a parser process (see services/ingest/process.py):
            # a hostile file costs that process its memory and time, never this one.
            prepared = await self._preparer.prepare(request, abort=abort)
        except LimitExceeded as exc:
            # The job item has only a reason string; the code leads it so clients can match.
            reason = f"{exc.code}: {exc.detail}"
            return await self._store.record_failure(
                collection_id, item, existing, reason, owner_id=owner_id
            )
        except ParseError as exc:
            return await self._store.record_failure(
                collection_id, item, existing, exc.detail, owner_id=owner_id
            )
        except PrepareAborted:
            raise
        except Exception as exc:  # a parser library's own bug must not fail the other files
            log.exception("document_parse_crashed", source=item.filename)
            reason = f"could not be read: {type(exc).__name__}"
            return await self._store.record_failure(
                collection_id, item, existing, reason, owner_id=owner_id
            )
        vectors = await self._embed([d.text for d in prepared.drafts], abort)
        return await self._store.store(
            collection_id, item, existing, prepared, vectors, owner_id=owner_id
        )

    async def _embed(self, texts: list[str], abort: AbortCheck | None) -> Vectors:
        """Embed in slices, checking ``abort`` between them: a large file takes minutes to
        embed on a CPU, and a cancelled job must not wait for it (a file of one slice, the
        usual case, is simply finished)."""
        vectors = np.empty((len(texts), self._embedder.dimension), dtype=np.float32)
        for start in range(0, len(texts), _EMBED_SLICE):
            if start and abort is not None and (reason := await abort()) is not None:
                raise PrepareAborted(reason)
            batch = texts[start : start + _EMBED_SLICE]
            vectors[start : start + len(batch)] = await self._embedder.embed(batch, kind="document")
        return vectors
