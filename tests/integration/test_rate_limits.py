"""Rate limits and login lockout: exact in-process counting, counts shared through a real
Redis by every worker, and an outage that keeps enforcing limits per process."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import pytest
import redis
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from structlog.testing import capture_logs

from parley.providers.redis_support import RedisGuard, call_deadline_s, create_redis
from parley.services.rate_limits import LoginLockout, RateLimiter, validate_rule
from parley.settings import RateLimitSettings, RedisSettings, SecuritySettings
from tests.services import delete_prefix, redis_url

RULES = RateLimitSettings(chat="3/minute", chat_ip="5/minute", read="2/minute", read_ip="9/minute")
LOCKOUT = SecuritySettings(lockout_attempts=3, lockout_window_s=60)
FAST = RedisSettings(socket_timeout_s=0.2, connect_timeout_s=0.2, retry_after_s=0.3)

Closable = TypeVar("Closable", RateLimiter, LoginLockout)


class Closer:
    """Closes every limiter a test built, so no expiry task outlives the test's loop."""

    def __init__(self) -> None:
        self.items: list[RateLimiter | LoginLockout] = []

    def __call__(self, item: Closable) -> Closable:
        self.items.append(item)
        return item


@pytest.fixture
async def closing() -> AsyncIterator[Closer]:
    closer = Closer()
    yield closer
    for item in closer.items:
        await item.aclose()


def events(logs: Sequence[Mapping[str, Any]], name: str) -> list[Mapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == name]


# --- in-process ---------------------------------------------------------------------------


async def test_allows_exactly_the_limit_then_refuses(closing: Closer) -> None:
    limiter = closing(RateLimiter(RULES))
    decisions = [await limiter.hit("chat", "key:abc") for _ in range(3)]
    assert all(d.allowed and d.limit == 3 and d.retry_after_s == 0 for d in decisions)
    assert [d.remaining for d in decisions] == [2, 1, 0]
    assert all(0 < d.reset_after_s <= 60 for d in decisions)

    refused = await limiter.hit("chat", "key:abc")
    assert not refused.allowed
    assert refused.remaining == 0 and refused.limit == 3
    assert 1 <= refused.retry_after_s <= 60
    assert refused.reset_after_s == refused.retry_after_s
    assert limiter.status() == "ok"


async def test_the_most_restrictive_limit_is_reported(closing: Closer) -> None:
    limiter = closing(RateLimiter(RateLimitSettings(chat="10/minute;2/hour", chat_ip="5/minute")))
    first = await limiter.hit("chat", "user:u1", "ip:10.0.0.1")
    assert (first.limit, first.remaining) == (2, 1)
    # The hourly window binds. Request limits use the sliding-window counter, whose windows
    # are aligned to the clock, so the reset is somewhere within the hour.
    assert 0 < first.reset_after_s <= 3600
    await limiter.hit("chat", "user:u1", "ip:10.0.0.1")
    third = await limiter.hit("chat", "user:u1", "ip:10.0.0.1")
    assert not third.allowed and third.limit == 2 and 0 < third.retry_after_s <= 3600


async def test_changing_the_principal_does_not_reset_the_ip_limit(closing: Closer) -> None:
    limiter = closing(RateLimiter(RULES))
    for n in range(5):  # a fresh user id each time: the per-user limit never binds
        assert (await limiter.hit("chat", f"user:u{n}", "ip:203.0.113.7")).allowed
    refused = await limiter.hit("chat", "user:brand-new", "ip:203.0.113.7")
    assert not refused.allowed and refused.limit == 5
    # The refused request consumed the new user's window but another IP is unaffected.
    other_ip = await limiter.hit("chat", "user:brand-new", "ip:198.51.100.1")
    assert other_ip.allowed and other_ip.limit == 3 and other_ip.remaining == 1


async def test_changing_the_ip_does_not_reset_the_principal_limit(closing: Closer) -> None:
    limiter = closing(RateLimiter(RULES))
    for n in range(3):
        assert (await limiter.hit("chat", "key:k1", f"ip:10.0.0.{n}")).allowed
    refused = await limiter.hit("chat", "key:k1", "ip:10.0.0.99")
    assert not refused.allowed and refused.limit == 3


async def test_classes_are_counted_independently(closing: Closer) -> None:
    limiter = closing(RateLimiter(RULES))
    for _ in range(3):
        await limiter.hit("chat", "key:k1")
    assert not (await limiter.hit("chat", "key:k1")).allowed
    read = await limiter.hit("read", "key:k1")
    assert read.allowed and read.limit == 2 and read.remaining == 1
    with pytest.raises(ValueError, match="unknown rate-limit class"):
        await limiter.hit("nope", "key:k1")


async def test_disabled_limits_allow_everything(closing: Closer) -> None:
    limiter = closing(RateLimiter(RULES.model_copy(update={"enabled": False})))
    for _ in range(20):
        decision = await limiter.hit("chat", "key:k1", "ip:10.0.0.1")
        assert decision.allowed and decision.limit == 0 and decision.retry_after_s == 0


def test_validate_rule() -> None:
    assert validate_rule("60/minute;1000/hour") == "60/minute;1000/hour"
    assert validate_rule("10 per second") == "10 per second"
    for bad in ["", "abc", "3/fortnight", "3/minute;", "0/minute"]:
        with pytest.raises(ValueError, match="invalid rate limit"):
            validate_rule(bad)


async def test_lockout_after_repeated_failures(closing: Closer) -> None:
    lockout = closing(LoginLockout(LOCKOUT))
    assert await lockout.locked_for("alice@example.com") == 0
    assert await lockout.record_failure("alice@example.com") == 0
    assert await lockout.record_failure("ALICE@example.com ") == 0  # same account
    locked = await lockout.record_failure(" Alice@Example.COM")
    assert 0 < locked <= 60
    assert 0 < await lockout.locked_for("alice@example.com") <= 60
    assert 0 < await lockout.record_failure("alice@example.com") <= 60  # still locked

    assert await lockout.locked_for("bob@example.com") == 0  # accounts are independent
    assert await lockout.record_failure("bob@example.com") == 0

    await lockout.reset("Alice@example.com")
    assert await lockout.locked_for("alice@example.com") == 0
    assert await lockout.record_failure("alice@example.com") == 0


async def test_lockout_lifts_when_the_window_frees(closing: Closer) -> None:
    lockout = closing(LoginLockout(SecuritySettings(lockout_attempts=2, lockout_window_s=1)))
    await lockout.record_failure("carol@example.com")
    assert await lockout.record_failure("carol@example.com") == 1
    await asyncio.sleep(1.05)
    assert await lockout.locked_for("carol@example.com") == 0


# --- Redis --------------------------------------------------------------------------------


@pytest.fixture
def shared() -> Iterator[tuple[str, str]]:
    """The test Redis URL and a key prefix of this test's own, deleted afterwards."""
    url = redis_url()
    prefix = f"parley-test-{uuid.uuid4().hex[:10]}:"
    yield url, prefix
    delete_prefix(url, prefix)


@pytest.fixture
async def clients() -> AsyncIterator[list[Redis]]:
    made: list[Redis] = []
    yield made
    for client in made:
        await client.aclose()


def guard_for(url: str, made: list[Redis], settings: RedisSettings = FAST, **kw: Any) -> RedisGuard:
    client = create_redis(url, settings)
    made.append(client)
    return RedisGuard(
        client, retry_after_s=settings.retry_after_s, timeout_s=call_deadline_s(settings), **kw
    )


def keys_under(url: str, prefix: str) -> list[str]:
    client = redis.Redis.from_url(url, socket_timeout=2)
    try:
        return [key.decode() for key in client.scan_iter(match=f"{prefix}*", count=1000)]
    finally:
        client.close()


async def test_workers_share_counts_through_redis(
    shared: tuple[str, str], clients: list[Redis], closing: Closer
) -> None:
    url, prefix = shared
    # Two workers: separate clients, pools and limiters, one Redis.
    one = closing(RateLimiter(RULES, redis=guard_for(url, clients), key_prefix=prefix))
    two = closing(RateLimiter(RULES, redis=guard_for(url, clients), key_prefix=prefix))
    assert (await one.hit("chat", "key:k1", "ip:10.0.0.1")).remaining == 2
    assert (await two.hit("chat", "key:k1", "ip:10.0.0.2")).remaining == 1
    assert (await one.hit("chat", "key:k1", "ip:10.0.0.3")).remaining == 0
    refused = await two.hit("chat", "key:k1", "ip:10.0.0.4")
    assert not refused.allowed and refused.retry_after_s >= 1
    assert one.status() == two.status() == "ok"

    lock_one = closing(LoginLockout(LOCKOUT, redis=guard_for(url, clients), key_prefix=prefix))
    lock_two = closing(LoginLockout(LOCKOUT, redis=guard_for(url, clients), key_prefix=prefix))
    await lock_one.record_failure("dave@example.com")
    await lock_two.record_failure("Dave@example.com")
    assert await lock_one.record_failure("dave@example.com") > 0
    assert await lock_two.locked_for("dave@example.com") > 0
    await lock_two.reset("dave@example.com")
    assert await lock_one.locked_for("dave@example.com") == 0

    keys = keys_under(url, prefix)
    assert keys and all(key.startswith(f"{prefix}rl:") for key in keys)
    # Neither emails nor IPs are stored in clear.
    assert not any("example.com" in key or "10.0.0" in key for key in keys)


async def test_redis_down_still_enforces_limits_in_process(
    clients: list[Redis], closing: Closer
) -> None:
    guard = guard_for("redis://127.0.0.1:1/0", clients)  # nothing listens on port 1
    limiter = closing(RateLimiter(RULES, redis=guard))
    lockout = closing(LoginLockout(LOCKOUT, redis=guard))
    with capture_logs() as logs:
        started = time.perf_counter()
        decisions = [await limiter.hit("chat", "key:k1") for _ in range(4)]
        assert time.perf_counter() - started < call_deadline_s(FAST)
        assert [d.allowed for d in decisions] == [True, True, True, False]
        assert decisions[-1].retry_after_s >= 1
        assert limiter.status() == "degraded" and guard.status() == "degraded"
        assert guard.round_trips == 1  # the breaker skips Redis after the first failure

        for _ in range(2):
            await lockout.record_failure("erin@example.com")
        assert await lockout.record_failure("erin@example.com") > 0
        await lockout.reset("erin@example.com")
        assert await lockout.locked_for("erin@example.com") == 0
    assert len(events(logs, "rate_limit_fallback")) == 2  # one per component, once
    assert [e["name"] for e in events(logs, "rate_limit_fallback")] == [
        "rate_limits",
        "login_lockout",
    ]


async def test_a_silent_redis_is_cut_by_the_call_timeout(closing: Closer) -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await reader.read(1 << 16)  # and never answer

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    slow = RedisSettings(socket_timeout_s=5, connect_timeout_s=5, retry_after_s=5)
    client = create_redis(f"redis://127.0.0.1:{port}/0", slow)
    guard = RedisGuard(client, retry_after_s=slow.retry_after_s)  # no deadline of its own
    limiter = closing(RateLimiter(RULES, redis=guard, timeout_s=0.2))
    try:
        started = time.perf_counter()
        decision = await limiter.hit("chat", "key:k1")
        assert time.perf_counter() - started < 1.0
        assert decision.allowed and decision.remaining == 2
        assert limiter.status() == "degraded"
    finally:
        await client.aclose()
        server.close()
        for writer in accepted:
            writer.close()
        await server.wait_closed()


async def test_counting_returns_to_redis_when_the_breaker_closes(
    shared: tuple[str, str], clients: list[Redis], closing: Closer
) -> None:
    url, prefix = shared
    now = [1000.0]
    guard = guard_for(url, clients, clock=lambda: now[0])
    limiter = closing(RateLimiter(RULES, redis=guard, key_prefix=prefix))
    peer = closing(RateLimiter(RULES, redis=guard_for(url, clients), key_prefix=prefix))

    async def broken(_client: Redis) -> None:
        raise RedisConnectionError("simulated outage")

    with capture_logs() as logs:
        await guard.call(broken)  # the breaker opens as on a real outage
        assert (await limiter.hit("chat", "key:k1")).remaining == 2  # in-process
        assert limiter.status() == "degraded"
        assert keys_under(url, prefix) == []

        now[0] += FAST.retry_after_s + 0.1  # the breaker lets a probe through
        back = await limiter.hit("chat", "key:k1")
        assert back.remaining == 2  # Redis' own count: the outage's hit stayed local
        assert limiter.status() == "ok" and guard.status() == "ok"
        assert (await peer.hit("chat", "key:k1")).remaining == 1  # shared again
    assert len(events(logs, "rate_limit_fallback")) == 1
    assert len(events(logs, "rate_limit_redis_restored")) == 1
