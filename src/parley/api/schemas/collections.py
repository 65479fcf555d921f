"""Collections and documents."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class CollectionCreate(BaseModel):
    """Body of ``POST /v1/collections``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)


class CollectionRead(BaseModel):
    """A collection with counts."""

    id: str
    name: str
    description: str | None
    embedding_model: str
    embedding_dim: int
    documents: int
    chunks: int
    created_at: datetime
    updated_at: datetime


class CollectionList(BaseModel):
    """A page of collections."""

    items: list[CollectionRead]
    next_cursor: str | None


class DocumentRead(BaseModel):
    """A document of a collection."""

    id: str
    collection_id: str
    source: str
    title: str
    mime_type: str
    size_bytes: int
    content_hash: str
    status: str
    error: str | None
    chunk_count: int
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class DocumentList(BaseModel):
    """A page of documents."""

    items: list[DocumentRead]
    next_cursor: str | None


class UploadAccepted(BaseModel):
    """Answer of an upload: the job that will ingest the files."""

    job_id: str
    status: str
    files: int


class JobItemRead(BaseModel):
    """One file of a job."""

    filename: str
    status: str
    error: str | None
    document_id: str | None
    chunks: int


class JobProgress(BaseModel):
    """Counters of a job."""

    total: int
    processed: int
    succeeded: int
    skipped: int
    failed: int
    chunks: int
    percent: float


class JobRead(BaseModel):
    """An ingestion job and its progress."""

    id: str
    collection_id: str
    status: str
    progress: JobProgress
    attempts: int
    error: str | None
    items: list[JobItemRead]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
