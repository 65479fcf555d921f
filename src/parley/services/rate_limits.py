"""Request rate limits and login lockout, shared by all workers through Redis when configured.

Request limits use the sliding-window counter of ``limits`` (O(1) per check, the previous
window weighted in, so a client cannot double its budget at a window boundary); the login
lockout uses the exact moving window ("N failures in any W seconds"). Redis is optional and
never fatal: while the shared guard says Redis is down (or a call fails), counting falls back
to an in-process window, which still enforces every limit per worker, and it returns to
Redis by itself once Redis answers again.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import structlog
from limits import RateLimitItem, RateLimitItemPerSecond, WindowStats, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter, SlidingWindowCounterRateLimiter
from limits.errors import StorageError

from parley.providers.redis_support import RedisGuard
from parley.settings import RateLimitSettings, SecuritySettings

if TYPE_CHECKING:
    # Annotations only: a guard exists only when the ``redis`` extra is installed.
    from redis.asyncio import Redis

log = structlog.get_logger(__name__)

T = TypeVar("T")

CLASSES = ("auth", "chat", "ingest", "admin", "read")

# A rate-limit check sits on every request: if Redis is slower than this, counting locally
# for that request is better than stalling it.
DEFAULT_TIMEOUT_S = 1.0


def validate_rule(value: str) -> str:
    """Return ``value`` if it is a valid ``limits`` string (``"60/minute;1000/hour"``)."""
    try:
        items = parse_many(value)
    except ValueError as exc:
        raise ValueError(
            f"invalid rate limit {value!r}: expected 'N/unit' parts joined by ';' (unit: "
            f"second, minute, hour or day), e.g. '60/minute;1000/hour' ({exc})"
        ) from exc
    # A zero budget would refuse everything; disabling is what ``enabled = false`` is for.
    if any(item.amount <= 0 for item in items):
        raise ValueError(
            f"invalid rate limit {value!r}: amounts must be positive "
            "(PARLEY_RATE_LIMITS__ENABLED=false turns limits off)"
        )
    return value


@dataclass(frozen=True, slots=True)
class RateDecision:
    """The outcome of one request against every limit that applies to it."""

    allowed: bool
    limit: int
    remaining: int
    reset_after_s: int
    retry_after_s: int


UNLIMITED = RateDecision(allowed=True, limit=0, remaining=0, reset_after_s=0, retry_after_s=0)


@dataclass(frozen=True, slots=True)
class _Window:
    allowed: bool
    limit: int
    remaining: int
    reset_at: float  # epoch seconds when the oldest counted entry leaves the window


def _opaque(identity: str) -> str:
    # Keys must not carry personal data (emails, IPs) in clear; the kind stays readable.
    kind, sep, value = identity.partition(":")
    digest = hashlib.sha256((value if sep else identity).encode()).hexdigest()[:32]
    return f"{kind}:{digest}" if sep else digest


Strategy = MovingWindowRateLimiter | SlidingWindowCounterRateLimiter


class _Windows:
    """Moving windows in Redis (through the guard) with an in-process fallback."""

    def __init__(
        self,
        guard: RedisGuard | None,
        key_prefix: str,
        name: str,
        timeout_s: float,
        strategy: type[Strategy] = MovingWindowRateLimiter,
    ) -> None:
        self._guard = guard
        self._name = name
        self._timeout_s = timeout_s
        self._memory_storage = MemoryStorage()
        self.memory: Strategy = strategy(self._memory_storage)
        self._redis: Strategy | None = None
        self._falling_back = False
        if guard is not None:
            # Reuse the guard's pool: one bounded set of connections per process.
            options: dict[str, Any] = {"connection_pool": guard.client.connection_pool}
            storage = RedisStorage(
                "async+redis://", implementation="redispy", key_prefix=f"{key_prefix}rl", **options
            )
            self._redis = strategy(storage)

    def status(self) -> str:
        """``ok``, or ``degraded`` while Redis is configured but counting is in-process."""
        if self._guard is None:
            return "ok"
        return "degraded" if self._falling_back or self._guard.status() != "ok" else "ok"

    async def run(self, op: Callable[[Strategy], Awaitable[T]]) -> T:
        """Run ``op`` on Redis, else in-process; ``op`` must never return None."""
        if self._guard is not None and self._redis is not None:
            redis = self._redis

            async def call(_client: Redis) -> T:
                async with asyncio.timeout(self._timeout_s):
                    return await op(redis)

            try:
                # The guard records RedisError/OSError (TimeoutError included), so the breaker
                # and /readyz see the outage; it returns None for those and while it is open.
                result = await self._guard.call(call)
            except StorageError:  # only raised if limits wraps errors; the same outage
                result = None
            if result is not None:
                if self._falling_back:
                    self._falling_back = False
                    log.info("rate_limit_redis_restored", name=self._name)
                return result
            if not self._falling_back:
                self._falling_back = True
                log.warning(
                    "rate_limit_fallback",
                    name=self._name,
                    detail="Redis unavailable; limits are counted per process until it returns",
                )
        return await op(self.memory)

    async def aclose(self) -> None:
        """Stop the in-process store's expiry task (Redis belongs to the container)."""
        timer = self._memory_storage.timer
        if timer is not None and not timer.done():
            timer.cancel()
            await asyncio.wait([timer])


async def _gather(checks: Sequence[Awaitable[T]]) -> list[T]:
    # Wait for every check so none is left running on a connection, then surface the first
    # failure (a bare gather would let the others run on unobserved).
    results = await asyncio.gather(*checks, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


async def _consume(limiter: Strategy, item: RateLimitItem, *ids: str) -> _Window:
    allowed = await limiter.hit(item, *ids)
    # limits' hit returns only a bool, so the window is read right after to fill the headers.
    stats = await limiter.get_window_stats(item, *ids)
    return _Window(allowed, item.amount, max(0, stats.remaining), stats.reset_time)


def _decide(windows: Sequence[_Window], now: float) -> RateDecision:
    refused = [w for w in windows if not w.allowed]
    if refused:
        # Allowed only once every exhausted window has freed a slot.
        worst = max(refused, key=lambda w: w.reset_at)
        wait = max(1, math.ceil(worst.reset_at - now))
        return RateDecision(False, worst.limit, 0, wait, wait)
    tightest = min(windows, key=lambda w: (w.remaining, -w.reset_at))
    reset = max(0, math.ceil(tightest.reset_at - now))
    return RateDecision(True, tightest.limit, tightest.remaining, reset, 0)


class _Counting:
    _windows: _Windows

    def status(self) -> str:
        """``ok``, or ``degraded`` when Redis is configured but failing (in-process fallback)."""
        return self._windows.status()

    async def aclose(self) -> None:
        """Release in-process resources (the Redis client belongs to the container)."""
        await self._windows.aclose()


class RateLimiter(_Counting):
    """Per-class request limits, counted per principal and, separately, per client IP."""

    def __init__(
        self,
        settings: RateLimitSettings,
        *,
        redis: RedisGuard | None = None,
        key_prefix: str = "parley:",
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self._enabled = settings.enabled
        self._rules: dict[str, tuple[list[RateLimitItem], list[RateLimitItem]]] = {
            klass: (
                parse_many(validate_rule(getattr(settings, klass))),
                parse_many(validate_rule(getattr(settings, f"{klass}_ip"))),
            )
            for klass in CLASSES
        }
        # Request limits use the sliding-window counter: O(1) per check and no per-request
        # expiry work. limits' in-memory moving window schedules an expiry task (with a
        # thread hop per key) on every hit, about 1 ms of CPU per request in the benchmark;
        # the counter weighs the previous window, so it is exact to within that weighting.
        self._windows = _Windows(
            redis, key_prefix, "rate_limits", timeout_s, SlidingWindowCounterRateLimiter
        )

    async def hit(self, klass: str, *identities: str) -> RateDecision:
        """Count one request of ``klass`` for each identity and decide on the tightest limit.

        ``ip:`` identities use the class's ``*_ip`` rule, any other the principal rule. Every
        applicable window is consumed even when another refuses, so switching principals
        does not escape the per-IP budget.
        """
        if klass not in self._rules:
            raise ValueError(f"unknown rate-limit class {klass!r}")
        if not self._enabled or not identities:
            return UNLIMITED
        principal, per_ip = self._rules[klass]
        checks = [
            (item, _opaque(identity))
            for identity in identities
            for item in (per_ip if identity.startswith("ip:") else principal)
        ]

        memory = self._windows.memory

        async def op(limiter: Strategy) -> list[_Window]:
            if limiter is memory:
                # In-process counting never waits on I/O: tasks would only add overhead.
                return [await _consume(limiter, item, klass, key) for item, key in checks]
            return await _gather([_consume(limiter, item, klass, key) for item, key in checks])

        windows = await self._windows.run(op)
        return _decide(windows, time.time())


class LoginLockout(_Counting):
    """Repeated failed logins lock an account (by normalized email) temporarily."""

    def __init__(
        self,
        security: SecuritySettings,
        *,
        redis: RedisGuard | None = None,
        key_prefix: str = "parley:",
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        # N failures in any W seconds lock; the lock lifts when the oldest failure ages out.
        self._item = RateLimitItemPerSecond(security.lockout_attempts, security.lockout_window_s)
        self._windows = _Windows(redis, key_prefix, "login_lockout", timeout_s)

    async def locked_for(self, email: str) -> int:
        """Seconds the account stays locked (0 = not locked); counts nothing."""
        ids = self._ids(email)

        async def op(limiter: Strategy) -> WindowStats:
            return await limiter.get_window_stats(self._item, *ids)

        return self._locked(await self._windows.run(op))

    async def record_failure(self, email: str) -> int:
        """Count a failed login; return the seconds the account is locked now (0 if not)."""
        ids = self._ids(email)

        async def op(limiter: Strategy) -> WindowStats:
            await limiter.hit(self._item, *ids)
            return await limiter.get_window_stats(self._item, *ids)

        return self._locked(await self._windows.run(op))

    async def reset(self, email: str) -> None:
        """Forget the failures after a successful login."""
        ids = self._ids(email)

        async def op(limiter: Strategy) -> bool:
            await limiter.clear(self._item, *ids)
            return True

        await self._windows.run(op)
        # Failures counted in-process during an outage must not outlive a successful login.
        await op(self._windows.memory)

    @staticmethod
    def _ids(email: str) -> tuple[str, str]:
        return "lockout", _opaque(f"email:{email.strip().lower()}")

    @staticmethod
    def _locked(stats: WindowStats) -> int:
        if stats.remaining > 0:
            return 0
        return max(1, math.ceil(stats.reset_time - time.time()))
