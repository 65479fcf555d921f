"""Collections, their documents, uploads and ingestion jobs.

``{collection_id}`` in every path below is a collection's id or its name; the
dependencies :data:`ReadableRef` and :data:`IngestRef` resolve it once, with the same rule
as ``collection_ids`` in search and sessions (``services.access.pick_collection``), so
routes, services and the audit log only ever see ids.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Path, Query, Response, UploadFile, status

from parley.api.audit import audited, path_param
from parley.api.deps import ContainerDep, PageDep
from parley.api.openapi import problems
from parley.api.schemas.auth import GrantCreate, GrantList, GrantRead
from parley.api.schemas.collections import (
    CollectionCreate,
    CollectionList,
    CollectionRead,
    DocumentList,
    DocumentRead,
    JobItemRead,
    JobProgress,
    JobRead,
    UploadAccepted,
)
from parley.api.security import AnyActor, IngestActor
from parley.db.models import CollectionGrantRow, DocumentRow, JobItemRow, JobRow
from parley.errors import InvalidInput, PayloadTooLarge
from parley.services.collections import CollectionView
from parley.services.ingestion import UploadedFile

router = APIRouter(prefix="/v1", tags=["collections"])

CollectionPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=200,
        description="the collection's id, or its name (URL-encoded; a name containing '/' "
        "can only be reached by id)",
    ),
]


# Two resolvers because each takes the same actor dependency as the routes that use it:
# FastAPI then authenticates, checks scopes and counts the rate limit once, before resolving.
async def _readable(collection_id: CollectionPath, actor: AnyActor, container: ContainerDep) -> str:
    return await container.collections.resolve_id(collection_id, actor=actor)


async def _ingestable(
    collection_id: CollectionPath, actor: IngestActor, container: ContainerDep
) -> str:
    return await container.collections.resolve_id(collection_id, actor=actor)


ReadableRef = Annotated[str, Depends(_readable)]
"""The id of the collection named in the path, for routes open to any caller."""
IngestRef = Annotated[str, Depends(_ingestable)]
"""The id of the collection named in the path, for routes that need the ingest scope."""


def _collection(view: CollectionView) -> CollectionRead:
    r = view.row
    return CollectionRead(
        id=r.id,
        name=r.name,
        description=r.description,
        embedding_model=r.embedding_model,
        embedding_dim=r.embedding_dim,
        documents=view.documents,
        chunks=view.chunks,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def _document(r: DocumentRow) -> DocumentRead:
    return DocumentRead(
        id=r.id,
        collection_id=r.collection_id,
        source=r.source,
        title=r.title,
        mime_type=r.mime_type,
        size_bytes=r.size_bytes,
        content_hash=r.content_hash,
        status=r.status,
        error=r.error,
        chunk_count=r.chunk_count,
        metadata=r.meta or {},
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def _job(job: JobRow, items: list[JobItemRow]) -> JobRead:
    succeeded = sum(1 for i in items if i.status == "succeeded")
    total = job.total_items
    return JobRead(
        id=job.id,
        collection_id=job.collection_id,
        status=job.status,
        progress=JobProgress(
            total=total,
            processed=job.processed_items,
            succeeded=succeeded,
            skipped=job.skipped_items,
            failed=job.failed_items,
            chunks=job.chunks_created,
            percent=round(100.0 * job.processed_items / total, 1) if total else 100.0,
        ),
        attempts=job.attempts,
        error=job.error,
        items=[
            JobItemRead(
                filename=i.filename,
                status=i.status,
                error=i.error,
                document_id=i.document_id,
                chunks=i.chunk_count,
            )
            for i in items
        ],
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
    )


@router.post(
    "/collections",
    status_code=status.HTTP_201_CREATED,
    response_model=CollectionRead,
    responses=problems(409),
)
async def create_collection(
    body: CollectionCreate, actor: IngestActor, container: ContainerDep
) -> CollectionRead:
    """Create a collection owned by the caller."""
    view = await container.collections.create(
        actor=actor, name=body.name, description=body.description
    )
    return _collection(view)


@router.get("/collections", response_model=CollectionList)
async def list_collections(
    actor: AnyActor, container: ContainerDep, page: PageDep
) -> CollectionList:
    """Collections the caller owns or was granted (admins: all), with counts."""
    result = await container.collections.page(actor=actor, limit=page.limit, cursor=page.cursor)
    return CollectionList(
        items=[_collection(v) for v in result.items], next_cursor=result.next_cursor
    )


@router.get(
    "/collections/{collection_id}", response_model=CollectionRead, responses=problems(404, 409)
)
async def get_collection(
    collection_id: ReadableRef, actor: AnyActor, container: ContainerDep
) -> CollectionRead:
    """One collection."""
    return _collection(await container.collections.get(collection_id, actor=actor))


@router.delete(
    "/collections/{collection_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(404, 409),
)
@audited("collection.delete", target_type="collection", target=path_param("collection_id"))
async def delete_collection(
    collection_id: IngestRef, actor: IngestActor, container: ContainerDep
) -> Response:
    """Delete a collection (owner or admin) with all its documents, chunks and jobs."""
    await container.collections.delete(collection_id, actor=actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/collections/{collection_id}/documents",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UploadAccepted,
    responses=problems(400, 404, 409),
)
async def upload_documents(
    collection_id: IngestRef,
    actor: IngestActor,
    container: ContainerDep,
    files: Annotated[list[UploadFile], File(description="one or more files")],
    metadata: Annotated[str | None, Form(max_length=10_000)] = None,
) -> UploadAccepted:
    """Queue files for ingestion; poll ``GET /v1/jobs/{job_id}`` for progress."""
    # Refuse before reading any file if the caller may not write here.
    await container.collections.writable(collection_id, actor=actor)
    limit = container.settings.limits.max_upload_bytes
    uploads: list[UploadedFile] = []
    for upload in files:
        if upload.size is not None and upload.size > limit:
            raise PayloadTooLarge(
                f"{upload.filename} exceeds the {limit}-byte per-file limit", field="files"
            )
        data = await upload.read(limit + 1)
        if len(data) > limit:
            raise PayloadTooLarge(
                f"{upload.filename} exceeds the {limit}-byte per-file limit", field="files"
            )
        uploads.append(UploadedFile(upload.filename or "unnamed", data, upload.content_type))
    job = await container.ingestion.submit(
        actor=actor, collection_id=collection_id, files=uploads, metadata=_metadata(metadata)
    )
    return UploadAccepted(job_id=job.id, status=job.status, files=job.total_items)


def _metadata(raw: str | None) -> dict[str, Any] | None:
    if raw is None or not raw.strip():
        return None
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise InvalidInput("metadata must be a JSON object", field="metadata") from exc
    if not isinstance(value, dict) or not all(
        isinstance(v, str | int | float | bool) for v in value.values()
    ):
        raise InvalidInput("metadata must be a flat JSON object of scalars", field="metadata")
    return value


@router.get(
    "/collections/{collection_id}/documents",
    response_model=DocumentList,
    responses=problems(404, 409),
)
async def list_documents(
    collection_id: ReadableRef,
    actor: AnyActor,
    container: ContainerDep,
    page: PageDep,
    status: Annotated[str | None, Query(max_length=16)] = None,
) -> DocumentList:
    """Documents of a collection, oldest first."""
    result = await container.collections.documents(
        collection_id, actor=actor, limit=page.limit, cursor=page.cursor, status=status
    )
    return DocumentList(items=[_document(d) for d in result.items], next_cursor=result.next_cursor)


@router.get("/documents/{document_id}", response_model=DocumentRead, responses=problems(404))
async def get_document(document_id: str, actor: AnyActor, container: ContainerDep) -> DocumentRead:
    """One document."""
    return _document(await container.collections.document(document_id, actor=actor))


@router.delete(
    "/documents/{document_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(404)
)
async def delete_document(
    document_id: str, actor: IngestActor, container: ContainerDep
) -> Response:
    """Delete a document and remove it from every index."""
    await container.collections.delete_document(document_id, actor=actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/jobs/{job_id}", response_model=JobRead, responses=problems(404))
async def get_job(job_id: str, actor: AnyActor, container: ContainerDep) -> JobRead:
    """Status and progress of an ingestion job."""
    job, items = await container.collections.job(job_id, actor=actor)
    return _job(job, items)


@router.post("/jobs/{job_id}/cancel", response_model=JobRead, responses=problems(404, 409))
async def cancel_job(job_id: str, actor: IngestActor, container: ContainerDep) -> JobRead:
    """Cancel an ingestion job; 409 ``conflict`` if it has already finished.

    A queued job is ``cancelled`` at once. A running job keeps status ``running`` until its
    worker reaches the next file (moments later), then becomes ``cancelled``: poll
    ``GET /v1/jobs/{job_id}``. Files already stored stay stored (each is its own transaction);
    the others are marked ``cancelled``.
    """
    job, items = await container.collections.cancel_job(job_id, actor=actor)
    return _job(job, items)


def _grant(row: CollectionGrantRow) -> GrantRead:
    return GrantRead(
        collection_id=row.collection_id,
        user_id=row.user_id,
        permission=row.permission,
        created_at=row.created_at,
    )


@router.post(
    "/collections/{collection_id}/grants",
    status_code=status.HTTP_201_CREATED,
    response_model=GrantRead,
    responses=problems(404, 409),
)
@audited(
    "collection.share",
    target_type="collection",
    target=path_param("collection_id"),
    detail=lambda _p, r: {"user_id": r.user_id, "permission": r.permission},
)
async def share_collection(
    collection_id: IngestRef, body: GrantCreate, actor: IngestActor, container: ContainerDep
) -> GrantRead:
    """Share a collection you own with another user, for ``read`` or ``write``.

    Name the user by ``user_id`` or ``email``. Posting again changes the permission.
    """
    if (body.user_id is None) == (body.email is None):
        raise InvalidInput("give exactly one of user_id or email")
    row = await container.collections.share(
        collection_id,
        actor=actor,
        user_id=body.user_id,
        email=body.email,
        permission=body.permission,
    )
    return _grant(row)


@router.get(
    "/collections/{collection_id}/grants", response_model=GrantList, responses=problems(404, 409)
)
async def list_grants(
    collection_id: ReadableRef, actor: AnyActor, container: ContainerDep
) -> GrantList:
    """Who a collection you own is shared with."""
    rows = await container.collections.grants(collection_id, actor=actor)
    return GrantList(items=[_grant(g) for g in rows])


@router.delete(
    "/collections/{collection_id}/grants/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(404, 409),
)
@audited(
    "collection.unshare",
    target_type="collection",
    target=path_param("collection_id"),
    detail=lambda p, _r: {"user_id": p["user_id"]},
)
async def unshare_collection(
    collection_id: IngestRef, user_id: str, actor: IngestActor, container: ContainerDep
) -> Response:
    """Withdraw a user's access to a collection you own."""
    await container.collections.unshare(collection_id, actor=actor, user_id=user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
