"""Alembic environment: runs on the connection Parley hands it, or builds one from settings."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

import parley.db.models  # noqa: F401  (importing the models registers their tables)
from parley.db.base import Base
from parley.db.migrate import include_name

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_from_settings() -> None:
    from parley.db.session import create_engine
    from parley.settings import Settings

    engine, _ = create_engine(Settings())
    async with engine.begin() as conn:
        await conn.run_sync(_run)
    await engine.dispose()


connection = context.config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    asyncio.run(_run_from_settings())
