"""Chat-turn overhead against a running server, with the fake LLM and the fake embedder.

"Overhead" is everything outside the model: the server reports it per turn in ``timings``
(``overhead_ms = total_ms - llm_ms``, measured from the start of the turn to the commit);
the client-side latency adds HTTP parsing, routing, JSON encoding and the loopback hop.

By default the script starts its own server (``python -m parley serve``) on 127.0.0.1 with
a fresh temporary data dir, ingests ``examples/docs``, then runs chat turns at concurrency
1 and 16 (every worker has its own session and a keep-alive ``httpx.AsyncClient``), plus a
streamed run at concurrency 1. Target: p50 server overhead under 5 ms on 2 cores.

    python bench/turn_overhead.py                         # ~20 s
    python bench/turn_overhead.py --turns 1000 --concurrency 1,4,16
    python bench/turn_overhead.py --url http://127.0.0.1:8000 [--pid PID]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "examples" / "docs"

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


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of a process (all its threads), from /proc."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def calibration_ms() -> float:
    """Best of 5 runs of a fixed pure-Python loop: this VM's CPU speed drifts by up to ~2x
    over minutes (host contention), so every run prints it to make runs comparable."""
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        sum(i * i for i in range(300_000))
        best = min(best, time.perf_counter() - t)
    return best * 1000


def loadavg() -> str:
    """The 1-minute load average (other processes on the machine skew every figure)."""
    return Path("/proc/loadavg").read_text().split()[0]


def rss_mb(pid: int | None) -> tuple[float, float] | None:
    """(VmRSS, VmHWM) of a process in MiB, from /proc."""
    if pid is None:
        return None
    try:
        fields = dict(
            line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        )
    except OSError:
        return None
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


@dataclass
class Run:
    """Figures of one measured phase."""

    label: str
    concurrency: int
    wall_s: float = 0.0
    client_ms: list[float] = field(default_factory=list)
    overhead_ms: list[float] = field(default_factory=list)
    retrieval_ms: list[float] = field(default_factory=list)
    persist_ms: list[float] = field(default_factory=list)
    llm_ms: list[float] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    rss: tuple[float, float] | None = None
    server_cpu_s: float | None = None
    client_cpu_s: float = 0.0
    errors: int = 0

    def add(self, client_ms: float, timings: dict[str, float]) -> None:
        """Record one finished turn."""
        self.client_ms.append(client_ms)
        self.overhead_ms.append(timings["overhead_ms"])
        self.retrieval_ms.append(timings["retrieval_ms"])
        self.persist_ms.append(timings["persist_ms"])
        self.llm_ms.append(timings["llm_ms"])

    @property
    def turns(self) -> int:
        """Completed turns."""
        return len(self.client_ms)


# --------------------------------------------------------------------------- server


class Server:
    """A ``parley serve`` subprocess on a free loopback port with a throwaway data dir."""

    def __init__(self, *, port: int | None, keep: bool) -> None:
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.keep = keep
        self.tmp = Path(tempfile.mkdtemp(prefix="parley-bench-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.tmp / "server.log"

    def start(self) -> None:
        """Launch the server (fake LLM and embedder, JSON logs at warning level)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
        env.update(
            PARLEY_DATA_DIR=str(self.tmp / "data"),
            PARLEY_LLM__PROVIDER="fake",
            PARLEY_EMBEDDINGS__PROVIDER="fake",
            PARLEY_EMBEDDINGS__DIMENSION="384",
            PARLEY_SERVER__LOG_LEVEL="warning",
            PARLEY_SERVER__LOG_JSON="true",
            PARLEY_SERVER__HOST="127.0.0.1",
        )
        log = self.log_path.open("wb")
        # cwd = the temp dir, so no stray .env file changes the configuration.
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "parley",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            cwd=self.tmp,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Poll /readyz until 200 (bounded)."""
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(base_url=self.url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"server exited early:\n{self.tail()}")
                try:
                    if (await client.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"server not ready after {timeout_s}s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        """The last lines of the server log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s; remove the data dir unless asked to keep it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        if self.keep:
            print(f"data and server log kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- setup


def doc_paths(docs: Path) -> list[Path]:
    """The files to upload, in a stable order."""
    return [p for p in sorted(docs.iterdir()) if p.is_file()]


async def ingest(client: httpx.AsyncClient, docs: Path, timeout_s: float = 120.0) -> str:
    """Create a collection, upload the docs, wait for the job; returns the collection id."""
    r = await client.post("/v1/collections", json={"name": f"bench-{uuid.uuid4().hex[:8]}"})
    r.raise_for_status()
    cid = r.json()["id"]
    files = [("files", (p.name, p.read_bytes())) for p in doc_paths(docs)]
    r = await client.post(f"/v1/collections/{cid}/documents", files=files)
    r.raise_for_status()
    job_id = r.json()["job_id"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = (await client.get(f"/v1/jobs/{job_id}")).json()
        if job["status"] not in ("queued", "running"):
            if job["status"] != "succeeded":
                raise RuntimeError(f"ingestion job ended {job['status']}: {job.get('error')}")
            print(
                f"ingested {job['progress']['succeeded']} files, "
                f"{job['progress']['chunks']} chunks into {cid}"
            )
            return str(cid)
        await asyncio.sleep(0.1)
    raise RuntimeError("ingestion job did not finish in time")


async def new_session(client: httpx.AsyncClient, cid: str) -> str:
    """One chat session over the collection."""
    r = await client.post("/v1/sessions", json={"collection_ids": [cid]})
    r.raise_for_status()
    return str(r.json()["id"])


class Questions:
    """Endless questions; unique by default, so the query-embedding and search caches miss
    as they would with real users (``--same-questions`` reuses the 10 base questions instead)."""

    def __init__(self, *, unique: bool) -> None:
        self._n = itertools.count()
        self._unique = unique

    def next(self) -> str:
        """The next question."""
        i = next(self._n)
        base = QUESTIONS[i % len(QUESTIONS)]
        return f"{base} (case {i})" if self._unique else base


# --------------------------------------------------------------------------- turns


async def turn(client: httpx.AsyncClient, sid: str, text: str) -> tuple[float, dict[str, float]]:
    """One JSON chat turn: (client latency ms, server timings)."""
    t = time.perf_counter()
    r = await client.post(f"/v1/sessions/{sid}/messages", json={"content": text})
    elapsed = (time.perf_counter() - t) * 1000
    if r.status_code != 201:
        raise RuntimeError(f"turn failed: {r.status_code} {r.text[:300]}")
    return elapsed, r.json()["timings"]


async def streamed_turn(
    client: httpx.AsyncClient, sid: str, text: str
) -> tuple[float, float, dict[str, float]]:
    """One SSE chat turn: (time to first token ms, total ms, server timings)."""
    t = time.perf_counter()
    ttft = float("nan")
    timings: dict[str, float] | None = None
    event = ""
    async with client.stream(
        "POST", f"/v1/sessions/{sid}/messages", params={"stream": "true"}, json={"content": text}
    ) as r:
        if r.status_code != 200:
            await r.aread()
            raise RuntimeError(f"stream failed: {r.status_code} {r.text[:300]}")
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
                if event == "token" and ttft != ttft:
                    ttft = (time.perf_counter() - t) * 1000
            elif line.startswith("data: ") and event == "done":
                timings = json.loads(line[6:])["timings"]
            elif line.startswith("data: ") and event == "error":
                raise RuntimeError(f"stream error: {line}")
    total = (time.perf_counter() - t) * 1000
    if timings is None:
        raise RuntimeError("stream ended without a done event")
    return ttft, total, timings


async def run_phase(
    url: str,
    cid: str,
    *,
    concurrency: int,
    turns: int,
    warmup: int,
    questions: Questions,
    stream: bool,
    pid: int | None,
) -> Run:
    """``turns`` turns spread over ``concurrency`` workers, each with its own session."""
    run = Run(label="stream" if stream else "json", concurrency=concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits) as client:
        sessions = [await new_session(client, cid) for _ in range(concurrency)]
        # Warm-up: connections, session scope cache, vector index copy, JIT-free caches.
        await asyncio.gather(
            *(turn(client, sid, questions.next()) for sid in sessions for _ in range(warmup))
        )
        remaining = itertools.count()

        async def worker(sid: str) -> None:
            while next(remaining) < turns:
                text = questions.next()
                try:
                    if stream:
                        ttft, total, timings = await streamed_turn(client, sid, text)
                        run.ttft_ms.append(ttft)
                        run.add(total, timings)
                    else:
                        run.add(*await turn(client, sid, text))
                except (RuntimeError, httpx.HTTPError) as exc:
                    run.errors += 1
                    if run.errors <= 3:
                        print(f"  error: {exc}", file=sys.stderr)
                    if run.errors > 20:
                        raise

        server_cpu, client_cpu = cpu_s(pid), time.process_time()
        started = time.perf_counter()
        await asyncio.gather(*(worker(sid) for sid in sessions))
        run.wall_s = time.perf_counter() - started
        run.client_cpu_s = time.process_time() - client_cpu
        after = cpu_s(pid)
        if server_cpu is not None and after is not None:
            run.server_cpu_s = after - server_cpu
    run.rss = rss_mb(pid)
    return run


# --------------------------------------------------------------------------- report


def _f(value: float) -> str:
    return "n/a" if value != value else f"{value:.2f}"


def _tri(values: list[float]) -> str:
    return " / ".join(_f(pct(values, q)) for q in (50, 95, 99))


def report(runs: list[Run], *, floor_ms: list[float]) -> None:
    """Markdown table of every phase."""
    print()
    print(
        "| mode | c | turns | turns/s | client latency p50 / p95 / p99 ms | "
        "server overhead p50 / p95 / p99 ms | retrieval p50 ms | persist p50 / p99 ms | "
        "TTFT p50 / p99 ms | server CPU ms/turn | client CPU ms/turn | server RSS (peak) MiB |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in runs:
        rss = f"{r.rss[0]:.0f} ({r.rss[1]:.0f})" if r.rss else "n/a"
        ttft = f"{_f(pct(r.ttft_ms, 50))} / {_f(pct(r.ttft_ms, 99))}" if r.ttft_ms else "-"
        server_cpu = f"{1000 * r.server_cpu_s / r.turns:.2f}" if r.server_cpu_s else "n/a"
        print(
            f"| {r.label} | {r.concurrency} | {r.turns} | {r.turns / r.wall_s:.1f} | "
            f"{_tri(r.client_ms)} | {_tri(r.overhead_ms)} | {_f(pct(r.retrieval_ms, 50))} | "
            f"{_f(pct(r.persist_ms, 50))} / {_f(pct(r.persist_ms, 99))} | {ttft} | "
            f"{server_cpu} | {1000 * r.client_cpu_s / r.turns:.2f} | {rss} |"
        )
    print(
        f"\nHTTP floor (GET /livez, c=1, same client): p50 {_f(pct(floor_ms, 50))} ms, "
        f"p99 {_f(pct(floor_ms, 99))} ms"
    )
    errors = sum(r.errors for r in runs)
    if errors:
        print(f"{errors} turns failed (excluded from the figures)")
    first = next((r for r in runs if r.label == "json" and r.concurrency == 1), None)
    if first is not None:
        p50 = pct(first.overhead_ms, 50)
        verdict = "MET" if p50 < 5.0 else "MISSED"
        print(f"target: p50 server overhead < 5 ms at c=1: {p50:.2f} ms → {verdict}")
        llm = _f(pct(first.llm_ms, 50))
        print(f"llm_ms p50 at c=1 (fake model, incl. follow-up rewrite): {llm} ms")


async def http_floor(url: str, n: int = 300) -> list[float]:
    """Latency of the cheapest route: what HTTP + the framework cost on their own."""
    out: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=10.0) as client:
        for i in range(n + 20):
            t = time.perf_counter()
            (await client.get("/livez")).raise_for_status()
            if i >= 20:
                out.append((time.perf_counter() - t) * 1000)
    return out


def _parse_concurrency(raw: str) -> list[int]:
    return [int(x) for x in raw.split(",") if x.strip()]


async def main(args: argparse.Namespace) -> None:
    server: Server | None = None
    pid = args.pid
    url = args.url
    try:
        if url is None:
            server = Server(port=args.port, keep=args.keep)
            server.start()
            await server.wait_ready()
            assert server.proc is not None
            pid = server.proc.pid
            url = server.url
            print(f"started server pid {pid} at {url} (data {server.tmp})")
        elif not url.startswith(("http://127.0.0.1", "http://localhost")):
            raise SystemExit("--url must point at a loopback address")
        load_start, calib_start = loadavg(), calibration_ms()
        print(
            f"python {platform.python_version()} · {os.cpu_count()} CPUs · "
            f"turns={args.turns} warmup={args.warmup}/session · "
            f"unique questions={not args.same_questions} · load {load_start} · "
            f"calibration {calib_start:.1f} ms"
        )
        async with httpx.AsyncClient(base_url=url, timeout=30.0) as client:
            cid = await ingest(client, args.docs)
        print(f"server RSS after ingest: {_rss_text(rss_mb(pid))}")
        questions = Questions(unique=not args.same_questions)
        runs: list[Run] = []
        for c in _parse_concurrency(args.concurrency):
            run = await run_phase(
                url,
                cid,
                concurrency=c,
                turns=args.turns,
                warmup=args.warmup,
                questions=questions,
                stream=False,
                pid=pid,
            )
            print(f"  json c={c}: {run.turns} turns in {run.wall_s:.1f}s")
            runs.append(run)
        if args.stream_turns:
            run = await run_phase(
                url,
                cid,
                concurrency=1,
                turns=args.stream_turns,
                warmup=args.warmup,
                questions=questions,
                stream=True,
                pid=pid,
            )
            print(f"  stream c=1: {run.turns} turns in {run.wall_s:.1f}s")
            runs.append(run)
        floor = await http_floor(url)
        report(runs, floor_ms=floor)
        print(f"load average: {load_start} at start, {loadavg()} at end")
        print(
            f"CPU calibration (lower = faster host): {calib_start:.1f} ms at start, "
            f"{calibration_ms():.1f} ms at end"
        )
    finally:
        if server is not None:
            server.stop()


def _rss_text(value: tuple[float, float] | None) -> str:
    return "n/a" if value is None else f"{value[0]:.0f} MiB (peak {value[1]:.0f} MiB)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--url", help="benchmark an already running server (loopback only)")
    p.add_argument("--pid", type=int, help="with --url: server pid, to report its RSS")
    p.add_argument("--port", type=int, help="port for the server this script starts")
    p.add_argument("--turns", type=int, default=400, help="measured turns per concurrency level")
    p.add_argument("--concurrency", default="1,16", help="comma-separated levels (default 1,16)")
    p.add_argument("--warmup", type=int, default=5, help="warm-up turns per session")
    p.add_argument("--stream-turns", type=int, default=200, help="streamed turns at c=1 (0: skip)")
    p.add_argument(
        "--same-questions", action="store_true", help="reuse 10 questions (search-cache hits)"
    )
    p.add_argument("--docs", type=Path, default=DOCS, help="documents to ingest")
    p.add_argument("--keep", action="store_true", help="keep the temp data dir and server log")
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
