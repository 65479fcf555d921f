"""PostgreSQL search columns (pgvector, tsvector); job retry back-off and cancellation.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22 03:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from parley.db.types import TSVectorType

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _is_postgres() -> bool:
    return op.get_bind().dialect.name == "postgresql"


def upgrade() -> None:
    with op.batch_alter_table("ingestion_jobs") as batch:
        batch.add_column(sa.Column("not_before", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(
            sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.add_column("chunks", sa.Column("tsv", TSVectorType(), nullable=True))
    if _is_postgres():
        # Vectors live in pgvector. Before this revision PostgreSQL was not supported, so the
        # bytea column of 0001 holds no data and can simply be replaced.
        op.execute("CREATE EXTENSION IF NOT EXISTS vector")
        op.execute("ALTER TABLE chunks DROP COLUMN embedding")
        op.execute("ALTER TABLE chunks ADD COLUMN embedding vector NOT NULL")
        op.execute("CREATE INDEX ix_chunks_tsv ON chunks USING gin (tsv)")
        # The HNSW index depends on the embedding dimension, which comes from the configured
        # model: the application creates it (ix_chunks_embedding_hnsw_<dim>) at start-up.


def downgrade() -> None:
    if _is_postgres():
        op.execute("DROP INDEX IF EXISTS ix_chunks_tsv")
        op.execute(
            "DO $$ DECLARE r record; BEGIN FOR r IN SELECT indexname FROM pg_indexes "
            "WHERE tablename = 'chunks' AND indexname LIKE 'ix_chunks_embedding_hnsw_%' "
            "LOOP EXECUTE 'DROP INDEX ' || quote_ident(r.indexname); END LOOP; END $$"
        )
        op.execute("ALTER TABLE chunks DROP COLUMN embedding")
        op.execute("ALTER TABLE chunks ADD COLUMN embedding bytea NOT NULL")
    op.drop_column("chunks", "tsv")
    with op.batch_alter_table("ingestion_jobs") as batch:
        batch.drop_column("cancel_requested")
        batch.drop_column("not_before")
