"""The Redis ``TurnStore`` on a real Redis: one round trip per read and per write, bounded
history, version-keyed search cache, and an outage that costs nothing and heals itself."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError
from structlog.testing import capture_logs

from parley.domain.chat import HistoryMessage, Role
from parley.providers.memory.base import TurnRead, TurnStore, TurnWrite
from parley.providers.memory.redis import RedisTurnStore
from parley.providers.redis_support import RedisGuard, call_deadline_s, create_redis
from parley.settings import RedisSettings
from tests.services import unavailable

REDIS_URL = os.environ.get("PARLEY_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def fast(key_prefix: str = "parley-test:") -> RedisSettings:
    """Short timeouts and breaker delay, so outage tests stay quick."""
    return RedisSettings(
        key_prefix=key_prefix, socket_timeout_s=0.2, connect_timeout_s=0.2, retry_after_s=0.3
    )


def msg(role: Role, content: str, tokens: int = 3) -> HistoryMessage:
    return HistoryMessage(role=role, content=content, token_count=tokens)


def turn(n: int) -> list[HistoryMessage]:
    return [msg("user", f"q{n}"), msg("assistant", f"a{n}")]


async def cleanup(client: Redis, prefix: str) -> None:
    keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=500)]
    if keys:
        await client.delete(*keys)


@pytest.fixture
async def shared_redis() -> AsyncIterator[Redis]:
    """The test Redis (``PARLEY_TEST_REDIS_URL``), or skip/fail when it is unreachable."""
    client = create_redis(REDIS_URL, RedisSettings())
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        unavailable(f"Redis is not reachable (PARLEY_TEST_REDIS_URL or 127.0.0.1:6379): {exc}")
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def redis_settings(shared_redis: Redis) -> AsyncIterator[RedisSettings]:
    """A unique key prefix per test; its keys are deleted afterwards."""
    settings = RedisSettings(key_prefix=f"parley-test:{uuid.uuid4().hex}:", history_max_messages=6)
    yield settings
    await cleanup(shared_redis, settings.key_prefix)


@pytest.fixture
def store(shared_redis: Redis, redis_settings: RedisSettings) -> RedisTurnStore:
    guard = RedisGuard(shared_redis, retry_after_s=redis_settings.retry_after_s)
    return RedisTurnStore(guard, redis_settings)


async def read(
    store: RedisTurnStore,
    sid: str,
    *,
    scope: list[str] | None = None,
    emb: str | None = None,
    digest: str | None = None,
    limit: int = 20,
) -> TurnRead:
    return await store.read(
        session_id=sid,
        history_limit=limit,
        embedding_key=emb,
        query_digest=digest,
        scope_hint=scope,
    )


async def write(
    store: RedisTurnStore,
    sid: str,
    before: TurnRead,
    *,
    scope: list[str],
    appended: list[HistoryMessage],
    refill: list[HistoryMessage] | None = None,
    embedding: bytes | None = None,
    search: bytes | None = None,
    emb: str | None = None,
    digest: str | None = None,
) -> None:
    update = TurnWrite(
        scope=scope, appended=appended, refill=refill, embedding=embedding, search=search
    )
    await store.write(
        session_id=sid, update=update, read=before, embedding_key=emb, query_digest=digest
    )


def trips(store: RedisTurnStore) -> int:
    return int(store.stats()["round_trips"])


# --- the happy path -------------------------------------------------------------------------


async def test_a_turn_is_one_read_and_one_write_round_trip(store: RedisTurnStore) -> None:
    assert isinstance(store, TurnStore)
    scope = ["c1", "c2"]
    await store.publish_versions({"c1": 1, "c2": 4})
    start = trips(store)

    first = await read(store, "s1", scope=scope, emb="m:q", digest="d1")
    assert trips(store) == start + 1
    assert first.history is None and first.scope is None  # unknown session: a miss
    assert first.embedding is None and first.search is None
    assert first.versions == {"c1": 1, "c2": 4}  # from the hint

    refill = [msg("user", "old q"), msg("assistant", "old a")]
    await write(
        store, "s1", first, scope=scope, appended=turn(1), refill=refill,
        embedding=b"\x00\x01emb", search=b"hits", emb="m:q", digest="d1",
    )  # fmt: skip
    assert trips(store) == start + 2

    second = await read(store, "s1", scope=None, emb="m:q", digest="d1")
    assert trips(store) == start + 3
    assert second.scope == scope
    assert second.history == [*refill, *turn(1)]  # oldest first, refill before the turn
    assert second.embedding == b"\x00\x01emb"
    assert second.search == b"hits"
    stats = store.stats()
    assert stats["history_hits"] == 1 and stats["history_misses"] == 1
    assert stats["embedding_l2_hits"] == 1 and stats["embedding_l2_misses"] == 1
    assert stats["search_l2_hits"] == 1 and stats["search_l2_misses"] == 1


async def test_history_is_bounded_and_ordered_oldest_first(
    store: RedisTurnStore, redis_settings: RedisSettings, shared_redis: Redis
) -> None:
    before = await read(store, "s")
    await write(store, "s", before, scope=["c"], appended=turn(0), refill=[])
    for n in range(1, 6):
        await write(store, "s", await read(store, "s"), scope=["c"], appended=turn(n))
    kept = redis_settings.history_max_messages
    assert await shared_redis.llen(store.history_key("s")) == kept
    everything = [m for n in range(6) for m in turn(n)]
    assert (await read(store, "s")).history == everything[-kept:]
    assert (await read(store, "s", limit=3)).history == everything[-3:]
    assert (await read(store, "s", limit=0)).history == []
    ttl = await shared_redis.ttl(store.meta_key("s"))
    assert 0 < ttl <= redis_settings.history_ttl_s
    assert 0 < await shared_redis.ttl(store.history_key("s")) <= redis_settings.history_ttl_s


async def test_an_empty_session_is_a_hit_with_no_messages(store: RedisTurnStore) -> None:
    before = await read(store, "empty", scope=["c"])
    assert before.history is None
    await write(store, "empty", before, scope=["c"], appended=[], refill=[])
    after = await read(store, "empty")
    assert after.history == [] and after.scope == ["c"]


async def test_a_lost_meta_or_list_is_a_miss(store: RedisTurnStore, shared_redis: Redis) -> None:
    await write(store, "s", await read(store, "s"), scope=["c"], appended=turn(1), refill=[])
    assert (await read(store, "s")).history == turn(1)

    await shared_redis.delete(store.history_key("s"))  # the list evicted on its own
    assert (await read(store, "s")).history is None
    await write(store, "s", await read(store, "s"), scope=["c"], appended=turn(2), refill=turn(1))
    assert (await read(store, "s")).history == [*turn(1), *turn(2)]

    await shared_redis.delete(store.meta_key("s"))  # the meta evicted on its own
    missed = await read(store, "s")
    assert missed.history is None and missed.scope is None


async def test_an_expired_session_is_a_miss(shared_redis: Redis) -> None:
    settings = RedisSettings(key_prefix=f"parley-test:{uuid.uuid4().hex}:", history_ttl_s=1)
    store = RedisTurnStore(RedisGuard(shared_redis, retry_after_s=1), settings)
    try:
        await write(store, "s", await read(store, "s"), scope=["c"], appended=turn(1), refill=[])
        assert (await read(store, "s")).history == turn(1)
        await asyncio.sleep(1.1)
        assert (await read(store, "s")).history is None
    finally:
        await cleanup(shared_redis, settings.key_prefix)


async def test_an_unknown_session_without_refill_is_left_uncached(store: RedisTurnStore) -> None:
    before = await read(store, "s", emb="k")
    await write(store, "s", before, scope=["c"], appended=turn(1), embedding=b"e", emb="k")
    after = await read(store, "s", emb="k")
    assert after.history is None  # never a partial history
    assert after.embedding == b"e"  # the caches were still written


async def test_a_stale_refill_never_replaces_a_known_history(store: RedisTurnStore) -> None:
    # Two turns of one session missed at once; the second refill predates the first turn.
    a, b = await read(store, "s"), await read(store, "s")
    await write(store, "s", a, scope=["c"], appended=turn(1), refill=turn(0))
    await write(store, "s", b, scope=["c"], appended=turn(2), refill=turn(0))
    assert (await read(store, "s")).history == [*turn(0), *turn(1), *turn(2)]


async def test_forget_session(store: RedisTurnStore) -> None:
    await write(store, "s", await read(store, "s"), scope=["c"], appended=turn(1), refill=[])
    await store.forget_session("s")
    assert (await read(store, "s")).history is None


# --- search keys and collection versions ----------------------------------------------------


async def test_search_key_is_derived_identically_in_lua_and_python(
    store: RedisTurnStore, shared_redis: Redis
) -> None:
    # Ids whose byte order differs from a locale's order, a prefix of another, and non-ASCII.
    scope = ["b", "B", "a-1", "a", "é", "Z_z"]
    versions = {cid: n + 1 for n, cid in enumerate(scope)}
    await store.publish_versions(versions)
    before = await read(store, "s", scope=scope, digest="q|k=6")
    assert before.versions == versions and before.search is None
    await write(
        store, "s", before, scope=scope, appended=turn(1), refill=[], search=b"S", digest="q|k=6"
    )
    key = store.search_key("q|k=6", scope, versions)
    assert key is not None and await shared_redis.get(key) == b"S"  # Python's key
    # Lua derives it from the stored meta, and from a hint in another order.
    assert (await read(store, "s", digest="q|k=6")).search == b"S"
    hinted = await read(store, "other", scope=list(reversed(scope)), digest="q|k=6")
    assert hinted.search == b"S"
    assert (await read(store, "s", digest="q|k=7")).search is None


async def test_a_version_bump_makes_cached_searches_unreachable(
    store: RedisTurnStore, shared_redis: Redis
) -> None:
    await store.publish_versions({"c1": 3, "c2": 1})
    before = await read(store, "s", scope=["c1", "c2"], digest="d")
    await write(
        store, "s", before, scope=["c1", "c2"], appended=turn(1), refill=[], search=b"old",
        digest="d",
    )  # fmt: skip
    assert (await read(store, "s", digest="d")).search == b"old"

    await store.publish_versions({"c2": 2})  # a write to c2 committed, on any instance
    after = await read(store, "s", digest="d")
    assert after.search is None and after.versions == {"c1": 3, "c2": 2}

    await store.publish_versions({"c2": 1, "c1": 2})  # late, older publishes never lower
    assert await shared_redis.get(store.version_key("c1")) == b"3"
    assert await shared_redis.get(store.version_key("c2")) == b"2"
    assert await shared_redis.ttl(store.version_key("c1")) == -1  # versions never expire


async def test_unknown_versions_disable_the_search_cache(store: RedisTurnStore) -> None:
    await store.publish_versions({"c1": 1})
    before = await read(store, "s", scope=["c1", "c2"], digest="d")
    assert before.versions == {"c1": 1}
    await write(
        store, "s", before, scope=["c1", "c2"], appended=turn(1), refill=[], search=b"x",
        digest="d",
    )  # fmt: skip
    assert (await read(store, "s", digest="d")).search is None


# --- outages ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisProcess:
    """A private, non-persistent redis-server this test starts, stops, pauses and resumes."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed")
        self.binary = str(binary)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--daemonize", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        self.stop()
        unavailable("the private redis-server did not start within 5 s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=5)
            self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


@pytest.fixture
def redis_process() -> Iterator[RedisProcess]:
    server = RedisProcess()
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.resume()
        server.stop()


def events(logs: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


async def test_an_unreachable_redis_costs_one_bounded_attempt_then_nothing() -> None:
    settings = fast()
    client = create_redis("redis://127.0.0.1:1/0", settings)  # nothing listens on port 1
    guard = RedisGuard(
        client, retry_after_s=settings.retry_after_s, timeout_s=call_deadline_s(settings)
    )
    store = RedisTurnStore(guard, settings)
    try:
        with capture_logs() as logs:
            started = time.perf_counter()
            first = await read(store, "s", scope=["c"], emb="k", digest="d")
            assert time.perf_counter() - started < call_deadline_s(settings)
            assert first == TurnRead(None, None, None, None, {})
            assert store.status() == "degraded" and guard.round_trips == 1

            started = time.perf_counter()
            assert (await read(store, "s", scope=["c"])).history is None
            await write(store, "s", first, scope=["c"], appended=turn(1), refill=[])
            await store.publish_versions({"c": 2})
            assert not await guard.ping()
            assert time.perf_counter() - started < 0.05
            assert guard.round_trips == 1 and trips(store) == 1  # no network attempt at all
            assert guard.stats()["skipped"] == 4
        assert len(events(logs, "redis_degraded")) == 1
        assert store.stats()["pending_versions"] == 1
        assert store.stats()["dirty_sessions"] == 1
    finally:
        await client.aclose()


async def test_a_redis_that_never_answers_is_bounded_by_the_socket_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1 << 16)
        await asyncio.sleep(5)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    settings = fast()
    client = create_redis(f"redis://127.0.0.1:{port}/0", settings)
    guard = RedisGuard(
        client, retry_after_s=settings.retry_after_s, timeout_s=call_deadline_s(settings)
    )
    try:
        started = time.perf_counter()
        assert not await guard.ping()
        assert time.perf_counter() - started < call_deadline_s(settings) + 0.1
        assert guard.status() == "degraded"
    finally:
        await client.aclose()
        server.close()


async def test_redis_down_then_back_recovers_by_itself(redis_process: RedisProcess) -> None:
    # Restarting redis-server must fit inside the breaker's pause, even on a loaded machine.
    settings = fast().model_copy(update={"retry_after_s": 3.0})
    client = create_redis(redis_process.url, settings)
    guard = RedisGuard(
        client, retry_after_s=settings.retry_after_s, timeout_s=call_deadline_s(settings)
    )
    store = RedisTurnStore(guard, settings)
    try:
        await write(store, "s", await read(store, "s"), scope=["c"], appended=turn(1), refill=[])
        assert (await read(store, "s")).history == turn(1)

        with capture_logs() as logs:
            redis_process.stop()
            assert (await read(store, "s")).history is None
            assert guard.status() == "degraded"
            await store.publish_versions({"c": 7})  # skipped: kept for later
            assert (await read(store, "s")).history is None  # still no attempt

            redis_process.start()  # empty again: nothing was persisted
            attempts = guard.round_trips
            assert not await guard.ping()  # within retry_after_s: not even tried
            assert guard.round_trips == attempts
            await asyncio.sleep(settings.retry_after_s)

            back = await read(store, "s", scope=["c"])  # first script call: NOSCRIPT + load
            assert guard.status() == "ok"
            assert back.history is None  # the new server is empty: refill from the DB
            assert back.versions == {"c": 7}  # the skipped publish rode along
            assert await guard.ping()
        assert len(events(logs, "redis_degraded")) == 1
        assert len(events(logs, "redis_recovered")) == 1
        assert store.stats()["pending_versions"] == 0
    finally:
        await client.aclose()


async def test_a_turn_missed_during_an_outage_is_never_served_stale(
    redis_process: RedisProcess,
) -> None:
    settings = fast()
    client = create_redis(redis_process.url, settings)
    guard = RedisGuard(
        client, retry_after_s=settings.retry_after_s, timeout_s=call_deadline_s(settings)
    )
    store = RedisTurnStore(guard, settings)
    try:
        await write(store, "s", await read(store, "s"), scope=["c"], appended=turn(1), refill=[])
        redis_process.pause()  # slow, not gone: the data survives
        before = await read(store, "s")
        assert before.history is None and guard.status() == "degraded"
        await write(store, "s", before, scope=["c"], appended=turn(2), refill=turn(1))
        assert store.stats()["dirty_sessions"] == 1
        redis_process.resume()
        await asyncio.sleep(settings.retry_after_s)

        # The cached [turn 1] lacks turn 2 (in the DB only): the next read must miss.
        after = await read(store, "s")
        assert guard.status() == "ok" and after.history is None
        await write(store, "s", after, scope=["c"], appended=turn(3), refill=[*turn(1), *turn(2)])
        assert (await read(store, "s")).history == [*turn(1), *turn(2), *turn(3)]
        assert store.stats()["dirty_sessions"] == 0
    finally:
        await client.aclose()


async def test_the_server_sees_one_command_per_read_and_per_write(
    redis_process: RedisProcess,
) -> None:
    settings = RedisSettings(key_prefix="parley-test:")
    client = create_redis(redis_process.url, settings)
    store = RedisTurnStore(RedisGuard(client, retry_after_s=1), settings)
    probe = Redis.from_url(redis_process.url)
    try:
        await store.publish_versions({"c": 1})
        warm = await read(store, "w", scope=["c"], emb="e", digest="d")  # loads the scripts
        await write(store, "w", warm, scope=["c"], appended=turn(0), refill=[])
        async with probe.monitor() as monitor:

            async def sent_by_clients() -> list[str]:
                """Commands clients sent since the last call (not those run inside scripts)."""
                marker = uuid.uuid4().hex
                await probe.echo(marker)  # MONITOR reports commands in execution order
                seen: list[str] = []
                while True:
                    info = await asyncio.wait_for(monitor.next_command(), timeout=2)
                    if info["command"] == f"ECHO {marker}":
                        return seen
                    if info["client_type"] != "lua":
                        seen.append(info["command"].split(" ", 1)[0].upper())

            await sent_by_clients()
            for n in range(1, 3):
                before = await read(store, f"s{n}", scope=["c"], emb="e", digest="d")
                assert await sent_by_clients() == ["EVALSHA"]
                await write(
                    store, f"s{n}", before, scope=["c"], appended=turn(n), refill=turn(0),
                    embedding=b"e", search=b"s", emb="e", digest="d",
                )  # fmt: skip
                assert await sent_by_clients() == ["EVALSHA"]
                assert (await read(store, f"s{n}", emb="e", digest="d")).search == b"s"
                assert await sent_by_clients() == ["EVALSHA"]
    finally:
        await probe.aclose()
        await client.aclose()
