"""Accounts, API keys, refresh-token families, grants, provider keys, audit log; owners.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22 06:00:00

Rows created before this revision get no owner (NULL): only admins see them until an admin
shares them. On SQLite, tables are rebuilt in batch mode; ``parley.db.migrate`` turns foreign
keys off around the migration so rebuilding a parent table cannot cascade-delete its children.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def _create_account_tables() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.CheckConstraint("role IN ('admin', 'member')", name=op.f("ck_users_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("expires_at", _TS, nullable=True),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.Column("last_used_at", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_api_keys_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("prefix", name=op.f("uq_api_keys_prefix")),
    )
    op.create_index(op.f("ix_api_keys_user_id"), "api_keys", ["user_id"])
    op.create_table(
        "token_families",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
        sa.Column("revoked_reason", sa.String(32), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_token_families_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_token_families")),
    )
    op.create_index(op.f("ix_token_families_user_id"), "token_families", ["user_id"])
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("family_id", sa.String(32), nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
        sa.Column("used_at", _TS, nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["family_id"],
            ["token_families.id"],
            name=op.f("fk_refresh_tokens_family_id_token_families"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_refresh_tokens")),
    )
    op.create_index(op.f("ix_refresh_tokens_family_id"), "refresh_tokens", ["family_id"])
    op.create_table(
        "collection_grants",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("collection_id", sa.String(32), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("permission", sa.String(8), nullable=False),
        sa.Column("created_by", sa.String(32), nullable=True),
        sa.Column("created_at", _TS, nullable=False),
        sa.CheckConstraint(
            "permission IN ('read', 'write')", name=op.f("ck_collection_grants_permission")
        ),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            name=op.f("fk_collection_grants_collection_id_collections"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_collection_grants_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collection_grants")),
        sa.UniqueConstraint(
            "collection_id", "user_id", name="uq_collection_grants_collection_user"
        ),
    )
    op.create_index("ix_collection_grants_user_id", "collection_grants", ["user_id"])
    op.create_table(
        "provider_keys",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("provider", sa.String(32), nullable=False),
        sa.Column("ciphertext", sa.Text(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_provider_keys_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_provider_keys")),
        sa.UniqueConstraint("user_id", "provider", name="uq_provider_keys_user_provider"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("actor_id", sa.String(32), nullable=True),
        sa.Column("actor_key_id", sa.String(32), nullable=True),
        sa.Column("target_type", sa.String(32), nullable=True),
        sa.Column("target_id", sa.String(64), nullable=True),
        sa.Column("ip", sa.String(64), nullable=True),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_created_at", "audit_log", ["created_at"])
    op.create_index("ix_audit_log_action_created_at", "audit_log", ["action", "created_at"])
    op.create_index(op.f("ix_audit_log_actor_id"), "audit_log", ["actor_id"])


def _owner(table: str, ondelete: str | None) -> None:
    with op.batch_alter_table(table) as batch:
        batch.add_column(sa.Column("owner_id", sa.String(32), nullable=True))
        if ondelete is not None:
            batch.create_foreign_key(
                op.f(f"fk_{table}_owner_id_users"), "users", ["owner_id"], ["id"], ondelete=ondelete
            )


def upgrade() -> None:
    # Batch mode reflects ``collections``, whose expression index SQLAlchemy cannot reflect
    # (it warns, then recreates it below): nothing is lost, so keep start-up output clean.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipped unsupported reflection")
        _upgrade()


def _upgrade() -> None:
    _create_account_tables()
    _owner("collections", "RESTRICT")
    with op.batch_alter_table("collections") as batch:
        batch.drop_constraint("uq_collections_name", type_="unique")
        batch.create_index(op.f("ix_collections_owner_id"), ["owner_id"])
    op.create_index(
        "uq_collections_owner_name",
        "collections",
        [sa.text("coalesce(owner_id, '')"), "name"],
        unique=True,
    )
    _owner("documents", "SET NULL")
    _owner("sessions", "CASCADE")
    with op.batch_alter_table("sessions") as batch:
        batch.create_index(op.f("ix_sessions_owner_id"), ["owner_id"])
    _owner("ingestion_jobs", "SET NULL")
    # Messages follow their session (cascade); the owner copy serves usage accounting.
    op.add_column("messages", sa.Column("owner_id", sa.String(32), nullable=True))
    op.create_index("ix_messages_owner_id_created_at", "messages", ["owner_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_messages_owner_id_created_at", table_name="messages")
    with op.batch_alter_table("messages") as batch:
        batch.drop_column("owner_id")
    for table in ("ingestion_jobs", "sessions", "documents"):
        with op.batch_alter_table(table) as batch:
            if table == "sessions":
                batch.drop_index(op.f("ix_sessions_owner_id"))
            batch.drop_constraint(op.f(f"fk_{table}_owner_id_users"), type_="foreignkey")
            batch.drop_column("owner_id")
    op.drop_index("uq_collections_owner_name", table_name="collections")
    with op.batch_alter_table("collections") as batch:
        batch.drop_index(op.f("ix_collections_owner_id"))
        batch.drop_constraint(op.f("fk_collections_owner_id_users"), type_="foreignkey")
        batch.drop_column("owner_id")
        batch.create_unique_constraint("uq_collections_name", ["name"])
    for table in (
        "audit_log",
        "provider_keys",
        "collection_grants",
        "refresh_tokens",
        "token_families",
        "api_keys",
        "users",
    ):
        op.drop_table(table)
