"""Benchmark InMemoryVectorIndex: exact vs HNSW build time, query latency and recall@k.

Default data: random unit vectors (seeded) with held-out random queries, a worst case for
HNSW recall since every point is nearly equidistant; ``--data lowrank`` is embedding-like.
Measures through the async API the app uses (thread hops included).

    python bench/vector_search.py                   # 10k and 100k (a few minutes on 2 cores)
    python bench/vector_search.py --sizes 10000     # quick
    python bench/vector_search.py --max             # also 1M (long; ~1.5 GB of vectors)
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from parley.providers.vectors.memory import InMemoryVectorIndex
from parley.settings import RetrievalSettings

Matrix = npt.NDArray[np.float32]


def _unit_vectors(rng: np.random.Generator, n: int, dim: int) -> Matrix:
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):  # bounded temporaries for the 1M case
        block = rng.standard_normal((min(100_000, n - start), dim), dtype=np.float32)
        out[start : start + len(block)] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _lowrank_vectors(rng: np.random.Generator, n: int, dim: int, basis: Matrix) -> Matrix:
    """Embedding-like data: a low intrinsic dimension plus a little noise, normalised."""
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        latent = rng.standard_normal((m, basis.shape[0]), dtype=np.float32)
        block = latent @ basis + 0.1 * rng.standard_normal((m, dim), dtype=np.float32)
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def _index(args: argparse.Namespace, threshold: int) -> InMemoryVectorIndex:
    return InMemoryVectorIndex(
        persist_dir=None,
        hnsw_threshold=threshold,
        connectivity=args.connectivity,
        expansion_add=args.expansion_add,
        expansion_search=args.expansion_search,
        dimension=args.dim,
    )


async def _measure(
    index: InMemoryVectorIndex, vectors: Matrix, queries: Matrix, k: int
) -> tuple[float, list[float], list[set[int]]]:
    ids = np.arange(len(vectors), dtype=np.int64)
    started = time.perf_counter()
    await index.replace("bench", ids=ids, vectors=vectors, version=1)
    build_s = time.perf_counter() - started
    await index.search(["bench"], queries[0], k=k)  # warm caches
    latencies, results = [], []
    for q in queries:
        started = time.perf_counter()
        hits = await index.search(["bench"], q, k=k)
        latencies.append((time.perf_counter() - started) * 1000)
        results.append({i for i, _ in hits})
    await index.aclose()
    return build_s, latencies, results


async def _run(args: argparse.Namespace, sizes: Sequence[int]) -> None:
    rng = np.random.default_rng(args.seed)
    print(
        f"data={args.data} dim={args.dim} k={args.k} queries={args.queries} M={args.connectivity} "
        f"ef_add={args.expansion_add} ef_search={args.expansion_search}"
    )
    header = f"{'N':>9} {'mode':>6} {'build s':>9} {'p50 ms':>8} {'p99 ms':>8} {'recall@k':>9}"
    print(header)
    print("-" * len(header))
    for n in sizes:
        if args.data == "lowrank":
            basis = rng.standard_normal((args.latent_dim, args.dim), dtype=np.float32)
            vectors = _lowrank_vectors(rng, n, args.dim, basis)
            queries = _lowrank_vectors(rng, args.queries, args.dim, basis)
        else:
            vectors = _unit_vectors(rng, n, args.dim)
            queries = _unit_vectors(rng, args.queries, args.dim)
        truth: list[set[int]] = []
        for mode, threshold in (("exact", n + 1), ("hnsw", 1)):
            build_s, lat, found = await _measure(_index(args, threshold), vectors, queries, args.k)
            if mode == "exact":
                truth = found
            recall = np.mean([len(t & f) / args.k for t, f in zip(truth, found, strict=True)])
            p50, p99 = np.percentile(lat, [50, 99])
            print(f"{n:>9} {mode:>6} {build_s:>9.2f} {p50:>8.3f} {p99:>8.3f} {recall:>9.3f}")


def main() -> None:
    """Parse arguments and print the table."""
    defaults = RetrievalSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sizes", default="10000,100000", help="comma-separated vector counts")
    parser.add_argument("--max", action="store_true", help="also run 1,000,000 vectors")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument(
        "--data",
        choices=["random", "lowrank"],
        default="random",
        help="random: isotropic unit vectors (worst case for HNSW); lowrank: embedding-like",
    )
    parser.add_argument("--latent-dim", type=int, default=24, help="intrinsic dim for lowrank")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--connectivity", type=int, default=defaults.hnsw_connectivity)
    parser.add_argument("--expansion-add", type=int, default=defaults.hnsw_expansion_add)
    parser.add_argument("--expansion-search", type=int, default=defaults.hnsw_expansion_search)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    if args.max and 1_000_000 not in sizes:
        sizes.append(1_000_000)
    asyncio.run(_run(args, sizes))


if __name__ == "__main__":
    main()
