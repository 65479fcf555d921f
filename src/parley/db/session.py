"""Engine and session factory. Created by the container, never at import time."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from parley.providers.extras import require_extra
from parley.settings import Settings


class StatementCounter:
    """Counts SQL statements sent to the database (one per cursor execute or executemany).

    Tests assert on it so N+1 regressions fail deterministically; benchmarks print it.
    """

    def __init__(self) -> None:
        self.count = 0
        self.statements: list[str] = []
        self.recording = False

    def reset(self, *, record: bool = False) -> None:
        """Start counting from zero; with ``record`` keep the statement texts too."""
        self.count = 0
        self.statements = []
        self.recording = record

    def _on_execute(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.count += 1
        if self.recording:
            self.statements.append(statement)


def create_engine(settings: Settings) -> tuple[AsyncEngine, StatementCounter]:
    """Build the async engine for the configured database, with its statement counter."""
    url = settings.resolved_database_url
    kwargs: dict[str, Any] = {"echo": settings.sql_echo}
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
        # Every unit of work ends its transaction before returning the connection, so the
        # pool's extra reset-on-return rollback is pure overhead on the hot path.
        kwargs["pool_reset_on_return"] = None
    else:
        _require_postgres_extra(url)
        db = settings.db
        server_settings = {
            # Nearest-neighbour search breadth, and pgvector >= 0.8's iterative scan so that
            # a collection filter does not starve the HNSW result list.
            "hnsw.ef_search": str(settings.retrieval.hnsw_expansion_search),
            "hnsw.iterative_scan": "relaxed_order",
            # Statements are prepared per connection; a generic plan of the hybrid search
            # re-evaluates the text query for every row (2x slower on small collections).
            "plan_cache_mode": "force_custom_plan",
        }
        if db.statement_timeout_ms:
            server_settings["statement_timeout"] = str(db.statement_timeout_ms)
        kwargs.update(
            pool_size=db.pool_size,
            max_overflow=db.max_overflow,
            pool_pre_ping=db.pool_pre_ping,
            pool_recycle=db.pool_recycle_s,
            pool_timeout=db.pool_timeout_s,
            connect_args={"server_settings": server_settings},
        )
    engine = create_async_engine(url, **kwargs)
    if url.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    counter = StatementCounter()
    event.listen(engine.sync_engine, "before_cursor_execute", counter._on_execute)
    return engine, counter


def _require_postgres_extra(url: str) -> None:
    # SQLAlchemy imports the driver inside create_async_engine, and the vector column type
    # needs pgvector on PostgreSQL: check both first, for one line naming the extra.
    if not url.startswith("postgresql"):
        return
    reason = "PARLEY_DATABASE_URL is a PostgreSQL URL"
    if url.split(":", 1)[0] == "postgresql+asyncpg":
        require_extra("asyncpg", extra="postgres", reason=reason)
    require_extra("pgvector.sqlalchemy", extra="postgres", reason=reason)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers proceed during a write; foreign keys make deletes cascade to chunks
    # (and, through triggers, to the FTS index); NORMAL sync is durable in WAL mode.
    cursor = dbapi_connection.cursor()
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA foreign_keys=ON",
        "PRAGMA synchronous=NORMAL",
        "PRAGMA busy_timeout=30000",
        "PRAGMA temp_store=MEMORY",
        "PRAGMA cache_size=-32000",
    ):
        cursor.execute(pragma)
    cursor.close()


def create_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
