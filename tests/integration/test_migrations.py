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
