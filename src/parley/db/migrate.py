"""Run Alembic migrations programmatically (``parley migrate`` and embedded auto-migrate)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

_SCRIPTS = Path(__file__).parent / "migrations"
# Objects managed by hand in migrations (SQLite FTS5 table and its shadow tables), which
# autogenerate must neither create nor drop.
_UNMANAGED_PREFIXES = ("chunks_fts",)


def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
    """Alembic autogenerate filter: skip objects the models do not describe."""
    return not (type_ == "table" and name is not None and name.startswith(_UNMANAGED_PREFIXES))


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_SCRIPTS))
    return cfg


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    """Upgrade the database behind ``engine`` to ``revision``."""

    def run(connection: Connection) -> None:
        cfg = _config()
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, revision)

    await _run(engine, run)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    """Downgrade the database behind ``engine`` to ``revision`` (``base`` empties it)."""

    def run(connection: Connection) -> None:
        cfg = _config()
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)

    await _run(engine, run)


async def _run(engine: AsyncEngine, fn: Callable[[Connection], None]) -> None:
    """Run migrations in one transaction.

    On SQLite, batch migrations rebuild tables (copy, drop, rename). With foreign keys on,
    dropping a parent table would cascade-delete its children, so they are turned off for
    the migration (the pragma is a no-op inside a transaction, hence before it starts) and
    checked afterwards, as the SQLite and Alembic documentation recommend.
    """
    sqlite = engine.dialect.name == "sqlite"
    async with engine.connect() as conn:
        if sqlite:
            await conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
        try:
            await conn.run_sync(fn)
            if sqlite:
                broken = (await conn.exec_driver_sql("PRAGMA foreign_key_check")).all()
                if broken:
                    raise RuntimeError(f"migration left dangling foreign keys: {broken[:5]}")
            await conn.commit()
        finally:
            if sqlite:
                await conn.rollback()
                await conn.exec_driver_sql("PRAGMA foreign_keys=ON")


async def current_revision(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """(current revision of the database, head revision of the code)."""

    def read(connection: Connection) -> str | None:
        return MigrationContext.configure(connection).get_current_revision()

    async with engine.connect() as conn:
        current = await conn.run_sync(read)
    head = ScriptDirectory.from_config(_config()).get_current_head()
    return current, head
