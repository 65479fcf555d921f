"""Shared fixtures: a real SQLite database per test, fake model providers, an ASGI client."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from parley.api.app import create_app
from parley.container import Container
from parley.providers.embeddings.fake import FakeEmbedder
from parley.providers.llm.fake import FakeLLM
from parley.providers.tokenizers.approx import ApproxTokenCounter
from parley.settings import Settings

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
DOCS = EXAMPLES / "docs"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Embedded defaults in a fresh data dir, with fast fake providers."""
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        embeddings={"provider": "fake", "dimension": 64},
        llm={"provider": "fake"},
        chunking={"tokenizer": "approx", "max_tokens": 120, "overlap_tokens": 20},
        jobs={"poll_interval_s": 0.05},
        retrieval={"index_sync_interval_s": 0.0},
    )


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


@pytest.fixture
async def client(container: Container, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client over the ASGI app (lifespan runs; the job runner is in-process)."""
    app = create_app(settings, container=container)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://parley.test") as c:
            yield c


def example_files(*names: str) -> list[tuple[str, tuple[str, bytes]]]:
    """Multipart ``files`` entries for example documents (all of them by default)."""
    paths = [DOCS / n for n in names] if names else sorted(DOCS.iterdir())
    return [("files", (p.name, p.read_bytes())) for p in paths]
