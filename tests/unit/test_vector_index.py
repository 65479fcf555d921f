"""InMemoryVectorIndex: exact and HNSW modes agree, overwrite/remove, merge, persistence."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from parley.errors import InvalidInput
from parley.providers.vectors.base import VectorIndex
from parley.providers.vectors.memory import InMemoryVectorIndex

DIM = 32
THRESHOLD = 500


def _index(persist_dir: Path | None = None, threshold: int = THRESHOLD) -> InMemoryVectorIndex:
    return InMemoryVectorIndex(
        persist_dir=persist_dir,
        hnsw_threshold=threshold,
        connectivity=16,
        expansion_add=128,
        expansion_search=128,
        dimension=DIM,
    )


def _unit(rng: np.random.Generator, n: int) -> np.ndarray:
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    unit: np.ndarray = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit


def _ids(start: int, n: int) -> np.ndarray:
    return np.arange(start, start + n, dtype=np.int64)


async def test_implements_the_port() -> None:
    index = _index()
    assert isinstance(index, VectorIndex)
    assert index.version("nope") is None
    assert index.size("nope") == 0
    assert await index.search(["nope"], _unit(np.random.default_rng(0), 1)[0], k=5) == []


async def test_exact_search_finds_itself_best_first() -> None:
    rng = np.random.default_rng(1)
    vectors = _unit(rng, 100)
    index = _index()
    await index.replace("c1", ids=_ids(1000, 100), vectors=vectors, version=3)
    assert index.mode("c1") == "exact" and index.size("c1") == 100 and index.version("c1") == 3
    hits = await index.search(["c1"], vectors[17], k=5)
    assert hits[0][0] == 1017 and hits[0][1] == pytest.approx(1.0, abs=1e-5)
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert len(await index.search(["c1"], vectors[0], k=500)) == 100


async def test_hnsw_matches_exact_recall_at_10() -> None:
    rng = np.random.default_rng(2)
    n = 3000
    vectors, queries = _unit(rng, n), _unit(rng, 50)
    exact, hnsw = _index(threshold=10 * n), _index()
    await exact.replace("c", ids=_ids(0, n), vectors=vectors, version=1)
    await hnsw.replace("c", ids=_ids(0, n), vectors=vectors, version=1)
    assert exact.mode("c") == "exact" and hnsw.mode("c") == "hnsw"
    recalls = []
    for q in queries:
        truth = {i for i, _ in await exact.search(["c"], q, k=10)}
        found = await hnsw.search(["c"], q, k=10)
        recalls.append(len(truth & {i for i, _ in found}) / 10)
    assert float(np.mean(recalls)) >= 0.9
    # Same scale of scores in both modes (cosine similarity).
    e_top = (await exact.search(["c"], queries[0], k=1))[0]
    h_top = (await hnsw.search(["c"], queries[0], k=1))[0]
    if e_top[0] == h_top[0]:
        assert e_top[1] == pytest.approx(h_top[1], abs=1e-4)


async def test_add_crosses_threshold_into_hnsw() -> None:
    rng = np.random.default_rng(3)
    vectors = _unit(rng, THRESHOLD + 50)
    index = _index()
    await index.add("c", ids=_ids(0, 300), vectors=vectors[:300], version=1)
    assert index.mode("c") == "exact"
    await index.add("c", ids=_ids(300, THRESHOLD - 250), vectors=vectors[300:], version=2)
    assert index.mode("c") == "hnsw" and index.size("c") == THRESHOLD + 50
    assert index.version("c") == 2
    assert (await index.search(["c"], vectors[5], k=1))[0][0] == 5
    assert (await index.search(["c"], vectors[-1], k=1))[0][0] == THRESHOLD + 49


@pytest.mark.parametrize("n", [50, THRESHOLD + 100], ids=["exact", "hnsw"])
async def test_add_overwrites_without_duplicates(n: int) -> None:
    rng = np.random.default_rng(4)
    vectors = _unit(rng, n)
    index = _index()
    await index.replace("c", ids=_ids(0, n), vectors=vectors, version=1)
    moved = _unit(rng, 1)
    # Same id twice in one batch as well: the last vector wins.
    await index.add(
        "c", ids=np.array([7, 7], dtype=np.int64), vectors=np.vstack([vectors[1], moved]), version=2
    )
    assert index.size("c") == n
    hits = await index.search(["c"], moved[0], k=n)
    assert [i for i, _ in hits].count(7) == 1
    assert hits[0][0] == 7 and hits[0][1] == pytest.approx(1.0, abs=1e-4)
    old = await index.search(["c"], vectors[7], k=3)
    assert old[0][0] != 7 or old[0][1] < 0.99


@pytest.mark.parametrize("n", [50, THRESHOLD + 100], ids=["exact", "hnsw"])
async def test_remove(n: int) -> None:
    rng = np.random.default_rng(5)
    vectors = _unit(rng, n)
    index = _index()
    await index.replace("c", ids=_ids(0, n), vectors=vectors, version=1)
    await index.remove("c", ids=[3, 4, 999_999], version=2)
    assert index.size("c") == n - 2 and index.version("c") == 2
    for q in (vectors[3], vectors[4]):
        ids = [i for i, _ in await index.search(["c"], q, k=20)]
        assert 3 not in ids and 4 not in ids and len(ids) == len(set(ids)) == 20
    # Re-adding a removed id works.
    await index.add("c", ids=np.array([3], dtype=np.int64), vectors=vectors[3:4], version=3)
    assert (await index.search(["c"], vectors[3], k=1))[0][0] == 3


async def test_remove_on_unknown_collection_records_nothing() -> None:
    index = _index()
    await index.remove("ghost", ids=[1], version=5)
    assert index.version("ghost") is None


async def test_search_merges_collections_by_score() -> None:
    rng = np.random.default_rng(6)
    a, b = _unit(rng, 40), _unit(rng, THRESHOLD + 10)
    index = _index()
    await index.replace("a", ids=_ids(0, 40), vectors=a, version=1)
    await index.replace("b", ids=_ids(10_000, len(b)), vectors=b, version=1)
    assert index.mode("a") == "exact" and index.mode("b") == "hnsw"
    q = a[3] + b[8]
    hits = await index.search(["a", "b", "a", "missing"], q, k=6)
    assert {hits[0][0], hits[1][0]} == {3, 10_008}
    assert [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
    assert len(hits) == len({i for i, _ in hits}) == 6
    only_a = await index.search(["a"], q, k=6)
    assert all(i < 10_000 for i, _ in only_a)


async def test_drop_forgets() -> None:
    index = _index()
    await index.replace("c", ids=_ids(0, 3), vectors=_unit(np.random.default_rng(7), 3), version=1)
    await index.drop("c")
    assert index.version("c") is None and index.size("c") == 0


async def test_concurrent_search_and_add_are_safe() -> None:
    rng = np.random.default_rng(8)
    vectors = _unit(rng, 2000)
    index = _index()
    await index.replace("c", ids=_ids(0, 600), vectors=vectors[:600], version=1)

    async def writer() -> None:
        for v, start in enumerate(range(600, 2000, 200), start=2):
            await index.add(
                "c", ids=_ids(start, 200), vectors=vectors[start : start + 200], version=v
            )

    async def reader() -> None:
        # HNSW is approximate (random 384-d data is its worst case), so a reader checks that
        # every answer is well-formed while writes interleave, not that it is exact.
        for i in range(60):
            hits = await index.search(["c"], vectors[i], k=3)
            ids = [h for h, _ in hits]
            scores = [score for _, score in hits]
            assert len(ids) == len(set(ids)) == 3 and all(0 <= h < 2000 for h in ids)
            assert scores == sorted(scores, reverse=True) and scores[0] <= 1.0 + 1e-5

    await asyncio.gather(writer(), reader(), reader())
    assert index.size("c") == 2000 and index.version("c") == 8


async def test_persistence_round_trip_with_version_check(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    vectors = _unit(rng, THRESHOLD + 20)
    index = _index(tmp_path)
    await index.replace("col-1", ids=_ids(0, len(vectors)), vectors=vectors, version=7)
    await index.replace("small", ids=_ids(0, 5), vectors=vectors[:5], version=1)
    await index.aclose()  # saves HNSW collections only
    meta = json.loads((tmp_path / "col-1.json").read_text())
    assert meta["version"] == 7 and meta["count"] == len(vectors) and meta["dimension"] == DIM
    assert (tmp_path / "col-1.usearch").is_file()
    assert not (tmp_path / "small.json").exists()

    fresh = _index(tmp_path)
    assert fresh.version("col-1") is None  # nothing loads by itself
    assert await fresh.load_persisted("col-1", expected_version=6) is False
    assert fresh.version("col-1") is None
    assert await fresh.load_persisted("col-1", expected_version=7) is True
    assert fresh.version("col-1") == 7 and fresh.mode("col-1") == "hnsw"
    assert fresh.size("col-1") == len(vectors)
    assert (await fresh.search(["col-1"], vectors[11], k=1))[0][0] == 11
    assert await fresh.load_persisted("absent", expected_version=1) is False

    await fresh.remove("col-1", ids=[11], version=8)
    assert await fresh.save("col-1") is True
    assert json.loads((tmp_path / "col-1.json").read_text())["version"] == 8
    await fresh.drop("col-1")
    assert not (tmp_path / "col-1.json").exists() and not (tmp_path / "col-1.usearch").exists()


async def test_corrupt_persisted_copy_is_ignored(tmp_path: Path) -> None:
    (tmp_path / "c.usearch").write_bytes(b"not an index" * 10)
    (tmp_path / "c.json").write_text(
        json.dumps({"format": 1, "version": 1, "count": 10, "dimension": DIM})
    )
    index = _index(tmp_path)
    assert await index.load_persisted("c", expected_version=1) is False
    assert index.version("c") is None


@pytest.mark.parametrize("bad", ["../escape", "a/b", "", "x.y", "..", "c\x00"])
async def test_path_traversal_ids_rejected(tmp_path: Path, bad: str) -> None:
    index = _index(tmp_path)
    vectors = _unit(np.random.default_rng(10), 1)
    with pytest.raises(InvalidInput):
        await index.replace(bad, ids=_ids(0, 1), vectors=vectors, version=1)
    with pytest.raises(InvalidInput):
        await index.load_persisted(bad, expected_version=1)
    with pytest.raises(InvalidInput):
        await index.save(bad)


async def test_rejects_wrong_shapes() -> None:
    index = _index()
    with pytest.raises(InvalidInput):
        await index.add("c", ids=_ids(0, 2), vectors=np.ones((2, DIM + 1), np.float32), version=1)
    with pytest.raises(InvalidInput):
        await index.search(["c"], np.ones(DIM + 1, np.float32), k=1)
    with pytest.raises(InvalidInput):
        await index.add("c", ids=_ids(0, 1), vectors=np.zeros((1, DIM), np.float32), version=1)
