"""SQL statements per warm chat turn, and in-process search latency (no HTTP).

In-process on the embedded SQLite default with the fake LLM and fake embedder: ingests
``examples/docs``, warms a session, then counts the statements of each turn through the
container's ``StatementCounter`` (the same counter the round-trip tests assert on) and times
``container.retrieval.search`` (what ``POST /v1/search`` runs).

Auth is on: by default every use case runs as a *member* principal, obtained the way the API
obtains it (a user and an API key created through the container, the key verified by
``container.auth.authenticate``), so the tenancy checks (session owner, the cached
readable-collection set of ``AccessPolicy``) are part of what is counted. ``--actor system``
runs as the CLI's ownerless system principal instead, which skips them. HTTP, and so rate
limiting, is not involved (see ``bench/turn_overhead.py`` for that).

    python bench/sql_per_turn.py
    python bench/sql_per_turn.py --turns 200 --searches 1000 --show-sql
    python bench/sql_per_turn.py --actor system
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiosqlite.core
from benchlib import calibration_ms, loadavg, pct

from parley.container import Container
from parley.domain.auth import SYSTEM, Principal
from parley.domain.retrieval import SearchQuery
from parley.logging import configure_logging
from parley.services.ingestion import UploadedFile
from parley.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "examples" / "docs"
QUESTIONS = [
    "What is the return window?",
    "How do I pair the app?",
    "battery storage temperature",
    "What does the warranty cover?",
    "stem faceplate torque",
]


def _pair(values: list[float]) -> str:
    return f"{pct(values, 50):.2f} / {pct(values, 99):.2f}"


def rss_mb() -> float:
    """This process's VmRSS in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _kind(statement: str) -> str:
    return " ".join(statement.split())[:70]


class HopCounter:
    """Counts calls handed to aiosqlite's connection thread (cursor, execute, fetch, close,
    commit, rollback): each is a thread hop and an event-loop wake-up, the real "round trip"
    of the embedded SQLite default. Bench-only instrumentation of a private method."""

    def __init__(self) -> None:
        self.count = 0
        self.names: Counter[str] = Counter()
        self._orig = aiosqlite.core.Connection._execute

    def install(self) -> None:
        """Wrap ``aiosqlite.Connection._execute``."""
        counter, orig = self, self._orig

        async def counting(conn: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
            counter.count += 1
            counter.names[getattr(fn, "__name__", type(fn).__name__)] += 1
            return await orig(conn, fn, *args, **kwargs)

        aiosqlite.core.Connection._execute = counting  # type: ignore[method-assign]

    def reset(self) -> None:
        """Start again from zero."""
        self.count = 0
        self.names.clear()


async def principal(c: Container, kind: str) -> Principal:
    """The actor of every use case: a member authenticated by API key, or the system."""
    if kind == "system":
        return SYSTEM
    user = await c.accounts.create(email="bench@example.com", password=None, role="member")
    new = await c.auth.create_key(actor=SYSTEM, user_id=user.id, name="bench")
    return await c.auth.authenticate(new.secret)


def describe(kind: str) -> str:
    """How the output names the actor."""
    if kind == "system":
        return "the system principal (CLI; no tenancy checks)"
    return "a member (API key, auth on; tenancy checks included)"


async def run(args: argparse.Namespace, data_dir: Path) -> None:
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        embeddings={"provider": "fake", "dimension": 384},
        llm={"provider": "fake"},
        server={"log_level": "warning"},
    )
    configure_logging(level="warning", json=True)
    c = Container.build(settings)
    await c.prepare_database()
    try:
        actor = await principal(c, args.actor)
        cid = (await c.collections.create(actor=actor, name="bench")).row.id
        files = [UploadedFile(p.name, p.read_bytes()) for p in sorted(DOCS.iterdir())]
        job = await c.ingestion.submit(actor=actor, collection_id=cid, files=files)
        status = await c.runner.run_once(job_id=job.id)
        assert status == "succeeded", status
        sid = (await c.sessions.create(actor=actor, collection_ids=[cid])).row.id
        for i in range(3):  # warm: session scope cache, vector index copy, history present
            await c.chat.complete(
                await c.chat.prepare(actor=actor, session_id=sid, content=f"warm up {i}")
            )

        hops = HopCounter()
        hops.install()
        per_turn: list[int] = []
        hops_per_turn: list[int] = []
        hop_kinds: Counter[str] = Counter()
        by_kind: Counter[str] = Counter()
        overhead: list[float] = []
        for i in range(args.turns):
            c.statements.reset(record=True)
            hops.reset()
            question = f"{QUESTIONS[i % len(QUESTIONS)]} (case {i})"
            result = await c.chat.complete(
                await c.chat.prepare(actor=actor, session_id=sid, content=question)
            )
            per_turn.append(c.statements.count)
            hops_per_turn.append(hops.count)
            hop_kinds.update(hops.names)
            by_kind.update(_kind(s) for s in c.statements.statements)
            overhead.append(result.timings["overhead_ms"])
            if args.show_sql and i == 0:
                for s in c.statements.statements:
                    print("   ", " ".join(s.split())[:200])

        # A repeated question within the cache TTL: retrieval is served from the search cache.
        q = "What is the return window? (cached)"
        await c.chat.complete(await c.chat.prepare(actor=actor, session_id=sid, content=q))
        c.statements.reset()
        await c.chat.complete(await c.chat.prepare(actor=actor, session_id=sid, content=q))
        cached = c.statements.count

        search_ms: list[float] = []
        search_sql: list[int] = []
        for i in range(args.searches):
            query = SearchQuery(
                text=f"{QUESTIONS[i % len(QUESTIONS)]} {i}", collection_ids=[cid], top_k=6
            )
            c.statements.reset()
            t = time.perf_counter()
            await c.retrieval.search(query)
            search_ms.append((time.perf_counter() - t) * 1000)
            search_sql.append(c.statements.count)

        n = len(per_turn)
        print(f"\nwarm chat turns (history on, unique questions) as {describe(args.actor)}: {n}")
        print("| figure | value |")
        print("|---|--:|")
        print(f"| SQL statements per turn (min / max) | {min(per_turn)} / {max(per_turn)} |")
        print(f"| SQL statements per turn, repeated question (search cache hit) | {cached} |")
        print(
            f"| aiosqlite thread hops per turn (min / max) | "
            f"{min(hops_per_turn)} / {max(hops_per_turn)} |"
        )
        print(f"| in-process turn overhead p50 / p99 ms | {_pair(overhead)} |")
        print(f"| search (retrieval.search) p50 / p99 ms | {_pair(search_ms)} |")
        print(
            f"| SQL statements per uncached search (min / max; max = periodic index "
            f"version check) | {min(search_sql)} / {max(search_sql)} |"
        )
        print(f"| process RSS MiB | {rss_mb():.0f} |")
        print(f"| load average (1 min) at the end | {loadavg()} |")
        print(f"| CPU calibration at the end (lower = faster host) | {calibration_ms():.1f} ms |")
        print("\nstatements per turn by kind (average):")
        for kind, count in by_kind.most_common():
            print(f"  {count / n:4.1f}  {kind}")
        print("aiosqlite thread hops per turn by call (average):")
        for name, count in hop_kinds.most_common():
            print(f"  {count / n:4.1f}  {name}")
    finally:
        await c.aclose()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--turns", type=int, default=300)
    p.add_argument("--searches", type=int, default=500)
    p.add_argument("--show-sql", action="store_true", help="print the statements of one turn")
    p.add_argument(
        "--actor",
        choices=("member", "system"),
        default="member",
        help="who runs the turns (default: a member authenticated by API key)",
    )
    args = p.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="parley-sql-"))
    try:
        asyncio.run(run(args, tmp / "data"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
