"""Usage of deleted messages, so deleting a session does not refund its tokens.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22 07:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "usage_carryover",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("owner_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("input_tokens", sa.Integer(), nullable=False),
        sa.Column("output_tokens", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_usage_carryover")),
    )
    op.create_index(
        "ix_usage_carryover_owner_id_created_at", "usage_carryover", ["owner_id", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_usage_carryover_owner_id_created_at", table_name="usage_carryover")
    op.drop_table("usage_carryover")
