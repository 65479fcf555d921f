"""Alembic migrations on a real SQLite file: up, down, up again; models match the schema."""

from __future__ import annotations

from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from parley.db import migrate
from parley.db.models import Base
from parley.db.session import create_engine
from parley.settings import Settings


async def test_upgrade_downgrade_upgrade(tmp_path: Path) -> None:
    engine, _ = create_engine(Settings(_env_file=None, data_dir=tmp_path))  # type: ignore[call-arg]
    try:
        await migrate.upgrade(engine)
        current, head = await migrate.current_revision(engine)
        assert current == head is not None
        async with engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
            assert {
                "collections",
                "documents",
                "chunks",
                "chunks_fts",
                "sessions",
                "messages",
            } <= tables
            diff = await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"include_name": migrate.include_name}),
                    Base.metadata,
                )
            )
        assert diff == [], diff  # the models and the migrations describe the same schema
        await migrate.downgrade(engine, "base")
        async with engine.connect() as conn:
            tables = set(await conn.run_sync(lambda c: inspect(c).get_table_names()))
        assert tables <= {"alembic_version"}
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            triggers = (
                (await conn.execute(text("SELECT name FROM sqlite_master WHERE type='trigger'")))
                .scalars()
                .all()
            )
        assert set(triggers) == {"chunks_fts_ai", "chunks_fts_ad", "chunks_fts_au"}
    finally:
        await engine.dispose()


async def test_accounts_migration_keeps_existing_data(tmp_path: Path) -> None:
    """0003 rebuilds parent tables on SQLite: children must survive, owners start empty."""
    engine, _ = create_engine(Settings(_env_file=None, data_dir=tmp_path))  # type: ignore[call-arg]
    try:
        await migrate.upgrade(engine, "0002")
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO collections (id, name, embedding_model, embedding_dim, version,"
                    " created_at, updated_at) VALUES ('c1', 'kb', 'm', 4, 1, :t, :t)"
                ),
                {"t": "2026-01-01 00:00:00"},
            )
            await conn.execute(
                text(
                    "INSERT INTO documents (id, collection_id, source, title, mime_type,"
                    " content_hash, size_bytes, status, chunk_count, meta, created_at,"
                    " updated_at) VALUES ('d1', 'c1', 'a.txt', 'A', 'text/plain', 'h', 1,"
                    " 'ready', 1, '{}', :t, :t)"
                ),
                {"t": "2026-01-01 00:00:00"},
            )
            await conn.execute(
                text(
                    "INSERT INTO chunks (document_id, collection_id, position, text, token_count,"
                    " meta, embedding) VALUES ('d1', 'c1', 0, 'hello world', 2, '{}', :e)"
                ),
                {"e": b"\0" * 16},
            )
            await conn.execute(
                text(
                    "INSERT INTO sessions (id, title, collection_ids, created_at)"
                    " VALUES ('s1', NULL, '[\"c1\"]', :t)"
                ),
                {"t": "2026-01-01 00:00:00"},
            )
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            docs = (await conn.execute(text("SELECT id, owner_id FROM documents"))).all()
            chunks = (await conn.execute(text("SELECT count(*) FROM chunks"))).scalar_one()
            hits = (
                await conn.execute(
                    text("SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH 'hello'")
                )
            ).all()
            owners = (await conn.execute(text("SELECT owner_id FROM collections"))).all()
            fks = (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one()
        assert docs == [("d1", None)] and chunks == 1 and len(hits) == 1
        assert owners == [(None,)]  # pre-existing data: ownerless, visible to admins
        assert fks == 1  # turned back on after the migration
    finally:
        await engine.dispose()
