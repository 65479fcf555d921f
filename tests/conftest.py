"""Shared fixtures: a real SQLite database per test, fake model providers, an ASGI client."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import structlog
from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp, Receive, Scope, Send

from parley.api.app import create_app
from parley.container import Container
from parley.domain.auth import SYSTEM
from parley.providers.embeddings.fake import FakeEmbedder
from parley.providers.llm.fake import FakeLLM
from parley.providers.tokenizers.approx import ApproxTokenCounter
from parley.settings import Settings
from tests.services import (
    delete_prefix,
    fresh_database,
    redis_url,
    start_postgres,
    unavailable,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DOCS = EXAMPLES / "docs"


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Undo any ``configure_logging`` a test (or the CLI it drives) made: its level filter
    would otherwise hide info events from later tests that capture logs, and a debug-level
    root logger would flood the output of every later test."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="session")
def postgres_admin_url() -> Iterator[str]:
    """A PostgreSQL server with pgvector for the whole run (see ``tests/services.py``)."""
    try:
        url, server = start_postgres()
    except Exception as exc:  # missing wheel, no permission to start a server, ...
        unavailable(f"PostgreSQL with pgvector could not be started: {exc}")
        raise
    yield url
    del server  # cleanup_mode="delete" stops the server and removes its data dir


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """Storage tests run once per backend with the same assertions."""
    return str(request.param)


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest) -> Iterator[str | None]:
    """None for the embedded SQLite file, or a fresh PostgreSQL database for this test."""
    if backend == "sqlite":
        yield None
        return
    admin = request.getfixturevalue("postgres_admin_url")
    with fresh_database(admin) as url:
        yield url


@pytest.fixture
def redis_config(backend: str) -> Iterator[dict[str, object]]:
    """The scale-out configuration (PostgreSQL) also runs with Redis, under its own prefix."""
    if backend == "sqlite":
        yield {}
        return
    url = redis_url()
    prefix = f"parley-test-{uuid.uuid4().hex[:10]}:"
    yield {"redis_url": url, "redis": {"key_prefix": prefix}}
    delete_prefix(url, prefix)


@pytest.fixture
def settings(tmp_path: Path, database_url: str | None, redis_config: dict[str, object]) -> Settings:
    """Fresh data dir, the backend under test (SQLite alone, or PostgreSQL + Redis), fakes."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        **redis_config,  # type: ignore[arg-type]
        data_dir=tmp_path / "data",
        database_url=database_url,
        embeddings={"provider": "fake", "dimension": 64},
        llm={"provider": "fake"},
        chunking={"tokenizer": "approx", "max_tokens": 120, "overlap_tokens": 20},
        jobs={"poll_interval_s": 0.05},
        retrieval={"index_sync_interval_s": 0.0},
        **TEST_SECURITY,  # type: ignore[arg-type]
    )


TEST_JWT_SECRET = "parley-test-signing-secret-0123456789abcdef"
TEST_SECURITY: dict[str, object] = {
    "jwt_secret": TEST_JWT_SECRET,
    # Cheap hashing keeps account tests fast; production defaults are tested in unit tests.
    "security": {"argon2_time_cost": 1, "argon2_memory_kib": 1024, "argon2_parallelism": 1},
    # Off unless a test is about limits, so suites making many calls are not throttled.
    "rate_limits": {"enabled": False},
}


@pytest.fixture
def fake_llm() -> FakeLLM:
    """The deterministic LLM; tests can read ``.requests``."""
    return FakeLLM()


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    """The deterministic embedder; tests can read its call counters."""
    return FakeEmbedder(dimension=64)


@pytest.fixture
async def container(
    settings: Settings, fake_llm: FakeLLM, fake_embedder: FakeEmbedder
) -> AsyncIterator[Container]:
    """A migrated container on a real SQLite file (no background runner)."""
    built = Container.build(
        settings, embedder=fake_embedder, llm=fake_llm, token_counter=ApproxTokenCounter()
    )
    await built.prepare_database()
    try:
        yield built
    finally:
        await built.aclose()


async def make_user(
    container: Container, email: str, *, role: str = "member", password: str | None = None
) -> tuple[str, str]:
    """A user and an API key with every scope its role allows: (user id, key)."""
    user = await container.accounts.create(email=email, password=password, role=role)
    new = await container.auth.create_key(actor=SYSTEM, user_id=user.id, name="test")
    return user.id, new.secret


def bearer(key: str) -> dict[str, str]:
    """The Authorization header for a key or token."""
    return {"Authorization": f"Bearer {key}"}


def per_request_state(app: ASGIApp) -> ASGIApp:
    """Give each request its own shallow copy of the lifespan state, as ASGI servers do.

    ``asgi_lifespan`` hands every request the *same* state dict, so anything a request stores
    on ``request.state`` (request id, rate-limit decision) would be seen by the next one. The
    copy must be made *inside* ``LifespanManager``, whose wrapper sets ``scope["state"]``.
    """

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and "state" in scope:
            scope["state"] = dict(scope["state"])
        await app(scope, receive, send)

    return wrapped


@pytest.fixture
async def app_client(container: Container, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client over the ASGI app with NO credentials (lifespan runs)."""
    app = create_app(settings, container=container)
    async with LifespanManager(per_request_state(app)) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://parley.test") as c:
            yield c


@pytest.fixture
async def client(
    app_client: httpx.AsyncClient, container: Container
) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP client authenticated as an admin (API key with every scope)."""
    _, key = await make_user(container, "admin@example.com", role="admin")
    app_client.headers.update(bearer(key))
    yield app_client


def example_files(*names: str) -> list[tuple[str, tuple[str, bytes]]]:
    """Multipart ``files`` entries for example documents (all of them by default)."""
    paths = [DOCS / n for n in names] if names else sorted(DOCS.iterdir())
    return [("files", (p.name, p.read_bytes())) for p in paths]
