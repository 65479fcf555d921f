"""One file's outcome, written: its document, chunks and vectors in one transaction, or why
it failed."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import structlog

from parley.db.models import DocumentRow, JobItemRow
from parley.providers.vectors.base import VectorIndex
from parley.services.ingest.prepare import PreparedDocument
from parley.services.retrieval import RetrievalService
from parley.services.uow import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)

_INSERT_BATCH = 1000  # chunk rows per INSERT of a document's one transaction


@dataclass(slots=True)
class ItemOutcome:
    """What happened to one file of a job."""

    filename: str
    status: str  # succeeded | skipped | failed
    chunks: int = 0
    error: str | None = None
    document_id: str | None = None


class DocumentStore:
    """Stores prepared files (idempotently, one transaction each) and records failed ones."""

    def __init__(
        self, *, uow: UnitOfWorkFactory, index: VectorIndex, retrieval: RetrievalService
    ) -> None:
        """Write through ``uow``; keep ``index`` and ``retrieval``'s caches in step."""
        self._uow = uow
        self._index = index
        self._retrieval = retrieval

    async def store(
        self,
        collection_id: str,
        item: JobItemRow,
        existing: DocumentRow | None,
        prepared: PreparedDocument,
        vectors: np.ndarray,
        *,
        owner_id: str | None,
    ) -> ItemOutcome:
        """Store a prepared file and its vectors, then patch the in-process index copy."""
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
        prepared: PreparedDocument,
        vectors: np.ndarray,
        *,
        owner_id: str | None,
    ) -> tuple[str, int, list[int], list[int]] | None:
        """The one transaction of a document; None (rolled back) if the item was taken over.

        Document row, chunks (and, via triggers, the keyword index), collection version and
        the job item's outcome commit together or not at all.
        """
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
            doc.title = prepared.title[:500]
            doc.mime_type = item.declared_mime or "application/octet-stream"
            doc.content_hash = item.content_hash
            doc.size_bytes = item.size_bytes
            doc.status, doc.error = "ready", None
            doc.chunk_count = len(prepared.drafts)
            doc.meta = {**prepared.meta, **(item.meta or {})}
            await tx.session.flush()
            base_meta = dict(item.meta or {})
            ids: list[int] = []
            drafts = prepared.drafts
            # In slices, within the one transaction: the rows of a 20,000-chunk document
            # would otherwise all exist at once, with their copies in the driver.
            for start in range(0, len(drafts), _INSERT_BATCH):
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
                    for i, d in enumerate(drafts[start : start + _INSERT_BATCH], start)
                ]
                ids += await tx.documents.add_chunks(rows)
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

    async def record_failure(
        self,
        collection_id: str,
        item: JobItemRow,
        existing: DocumentRow | None,
        reason: str,
        *,
        owner_id: str | None,
    ) -> ItemOutcome:
        """Record why a file failed: on its job item, and as a failed document if it is new."""
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
