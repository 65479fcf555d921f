"""Ingestion: accept uploads as durable jobs, then parse → chunk → embed → store per document."""

from __future__ import annotations

import asyncio
import hashlib
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
import structlog

from parley.db.models import DocumentRow, JobItemRow, JobRow
from parley.domain.auth import Principal
from parley.domain.documents import ChunkDraft, ParsedDocument
from parley.errors import InvalidInput, NotFound, ParseError, PayloadTooLarge
from parley.providers.embeddings.base import Embedder
from parley.providers.tokenizers.base import TokenCounter
from parley.providers.vectors.base import VectorIndex
from parley.repositories.text import all_storable
from parley.services.chunking import chunk_document
from parley.services.parsing import detect_mime, parse_document
from parley.services.retrieval import RetrievalService
from parley.services.uow import UnitOfWork, UnitOfWorkFactory
from parley.settings import ChunkingSettings, LimitSettings

log = structlog.get_logger(__name__)

_UNSAFE = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff/\\:*?\"<>|]+")


@dataclass(slots=True)
class UploadedFile:
    """A file handed to ingestion: its name, bytes and the declared content type."""

    filename: str
    data: bytes
    declared_mime: str | None = None


@dataclass(slots=True)
class ItemOutcome:
    """What happened to one file of a job."""

    filename: str
    status: str  # succeeded | skipped | failed
    chunks: int = 0
    error: str | None = None
    document_id: str | None = None


ProgressCallback = Callable[[ItemOutcome], None]


@dataclass(slots=True)
class _Prepared:
    parsed: ParsedDocument
    drafts: list[ChunkDraft] = field(default_factory=list)


def sanitize_filename(name: str, *, max_chars: int = 200) -> str:
    """Keep only the base name, without control or path characters; never empty."""
    base = PureWindowsPath(PurePosixPath(name).name).name
    base = unicodedata.normalize("NFC", base)
    base = _UNSAFE.sub("_", base).strip(" .")
    if len(base) > max_chars:
        stem, dot, ext = base.rpartition(".")
        base = (stem[: max_chars - len(ext) - 1] + dot + ext) if dot else base[:max_chars]
    return base or "unnamed"


class IngestionService:
    """Turns uploaded files into searchable chunks, durably and idempotently."""

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        embedder: Embedder,
        index: VectorIndex,
        retrieval: RetrievalService,
        counter: TokenCounter,
        chunking: ChunkingSettings,
        limits: LimitSettings,
        on_submit: Callable[[], None] | None = None,
    ) -> None:
        self._uow = uow
        self._embedder = embedder
        self._index = index
        self._retrieval = retrieval
        self._counter = counter
        self._chunking = chunking
        self._limits = limits
        self._on_submit = on_submit

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
        between two files, leaving the job for the caller to hand back.
        """
        cancelled = False
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
            outcome = await self._process_item(job.collection_id, item, owner_id=job.owner_id)
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
        self, collection_id: str, item: JobItemRow, *, owner_id: str | None
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
        try:
            prepared = await asyncio.to_thread(self._prepare, data, item)
        except ParseError as exc:
            return await self._record_failure(
                collection_id, item, existing, exc.detail, owner_id=owner_id
            )
        except Exception as exc:  # a parser library's own bug must not fail the other files
            log.exception("document_parse_crashed", source=item.filename)
            reason = f"could not be read: {type(exc).__name__}"
            return await self._record_failure(
                collection_id, item, existing, reason, owner_id=owner_id
            )
        texts = [d.text for d in prepared.drafts]
        vectors = await self._embedder.embed(texts, kind="document") if texts else None
        return await self._store(
            collection_id, item, existing, prepared, vectors, owner_id=owner_id
        )

    def _prepare(self, data: bytes, item: JobItemRow) -> _Prepared:
        parsed = parse_document(data, filename=item.filename, declared_mime=item.declared_mime)
        drafts = chunk_document(
            parsed,
            counter=self._counter,
            max_tokens=self._chunking.max_tokens,
            overlap_tokens=self._chunking.overlap_tokens,
        )
        if not drafts:
            raise ParseError("the document has no extractable text")
        return _Prepared(parsed, drafts)

    async def _store(
        self,
        collection_id: str,
        item: JobItemRow,
        existing: DocumentRow | None,
        prepared: _Prepared,
        vectors: np.ndarray | None,
        *,
        owner_id: str | None,
    ) -> ItemOutcome:
        assert vectors is not None
        async with self._retrieval.collection_lock(collection_id):
            stored = await self._write_document(
                collection_id, item, existing, prepared, vectors, owner_id=owner_id
            )
            if stored is None:
                return ItemOutcome(item.filename, "skipped", error="taken over by another worker")
            doc_id, version, removed, ids = stored
            # After the commit, outside the database writer lock: patching the in-process
            # index can take seconds when it crosses the HNSW threshold.
            try:
                await self._apply_to_index(collection_id, version, removed, ids, vectors)
            except Exception:
                # A half-patched copy would claim a version it does not hold: drop it, the
                # next search rebuilds it from the database.
                log.exception("vector_index_patch_failed", collection_id=collection_id)
                await self._index.drop(collection_id)
        await self._retrieval.collection_changed(collection_id, version)
        log.info("document_ingested", document_id=doc_id, source=item.filename, chunks=len(ids))
        return ItemOutcome(item.filename, "succeeded", chunks=len(ids), document_id=doc_id)

    async def _write_document(
        self,
        collection_id: str,
        item: JobItemRow,
        existing: DocumentRow | None,
        prepared: _Prepared,
        vectors: np.ndarray,
        *,
        owner_id: str | None,
    ) -> tuple[str, int, list[int], list[int]] | None:
        """The one transaction of a document; None (rolled back) if the item was taken over.

        Document row, chunks (and, via triggers, the keyword index), collection version and
        the job item's outcome commit together or not at all.
        """
        parsed = prepared.parsed
        async with self._uow(write=True) as tx:
            removed: list[int] = []
            doc = await tx.documents.get(existing.id) if existing is not None else None
            if doc is not None:
                removed = await tx.documents.delete_chunks(doc.id)
            else:
                doc = DocumentRow(
                    collection_id=collection_id, source=item.filename, owner_id=owner_id
                )
                tx.session.add(doc)
            doc.title = parsed.title[:500]
            doc.mime_type = item.declared_mime or "application/octet-stream"
            doc.content_hash = item.content_hash
            doc.size_bytes = item.size_bytes
            doc.status, doc.error = "ready", None
            doc.chunk_count = len(prepared.drafts)
            doc.meta = {**parsed.meta, **(item.meta or {})}
            await tx.session.flush()
            base_meta = dict(item.meta or {})
            rows = [
                {
                    "document_id": doc.id,
                    "collection_id": collection_id,
                    "position": d.position,
                    "text": d.text,
                    "token_count": d.token_count,
                    "meta": {**base_meta, **d.meta()},
                    "embedding": vectors[i].astype(np.float32).tobytes(),
                }
                for i, d in enumerate(prepared.drafts)
            ]
            ids = await tx.documents.add_chunks(rows)
            version = await tx.collections.bump_version(collection_id)
            if not await tx.jobs.finish_item(
                item.id, status="succeeded", document_id=doc.id, chunk_count=len(ids)
            ):
                return None  # leaving without commit rolls the whole document back
            await tx.commit()
            return doc.id, version, removed, ids

    async def _apply_to_index(
        self,
        collection_id: str,
        version: int,
        removed: list[int],
        ids: list[int],
        vectors: np.ndarray,
    ) -> None:
        # Only patch a copy that reflected the previous version; otherwise the next search
        # notices the version gap and rebuilds from the database.
        current = self._index.version(collection_id)
        if current is None or current != version - 1:
            return
        if removed:
            await self._index.remove(collection_id, ids=removed, version=version)
        await self._index.add(
            collection_id,
            ids=np.asarray(ids, dtype=np.int64),
            vectors=np.ascontiguousarray(vectors, dtype=np.float32),
            version=version,
        )

    async def _record_failure(
        self,
        collection_id: str,
        item: JobItemRow,
        existing: DocumentRow | None,
        reason: str,
        *,
        owner_id: str | None,
    ) -> ItemOutcome:
        async with self._uow(write=True) as tx:
            doc_id = existing.id if existing is not None else None
            if existing is None:
                # A new file that cannot be parsed is listed as a failed document with the
                # reason; an existing document keeps serving its previous, good version.
                doc = DocumentRow(
                    collection_id=collection_id,
                    source=item.filename,
                    owner_id=owner_id,
                    title=item.filename,
                    mime_type=item.declared_mime or "application/octet-stream",
                    content_hash=item.content_hash,
                    size_bytes=item.size_bytes,
                    status="failed",
                    error=reason,
                    chunk_count=0,
                    meta=dict(item.meta or {}),
                )
                await tx.documents.add(doc)
                doc_id = doc.id
            elif existing.status == "failed":
                await _mark_failed(tx, existing.id, item.content_hash, reason)
            if await tx.jobs.finish_item(
                item.id, status="failed", error=reason, document_id=doc_id
            ):
                await tx.commit()  # otherwise another worker owns the item: roll back
        log.warning("document_failed", source=item.filename, reason=reason)
        return ItemOutcome(item.filename, "failed", error=reason, document_id=doc_id)


async def _mark_failed(tx: UnitOfWork, document_id: str, content_hash: str, reason: str) -> None:
    doc = await tx.documents.get(document_id)
    if doc is not None:
        doc.content_hash, doc.error = content_hash, reason
