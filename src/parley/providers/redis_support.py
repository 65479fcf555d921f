"""One shared Redis client per process, behind a circuit breaker.

Redis only ever holds hot copies and caches (the database is the truth), so an outage must
cost requests nothing: every call is bounded by the socket timeouts, is never retried by the
client, and after a failure Redis is skipped entirely for ``retry_after_s`` before a single
probe is let through. A warning is logged once per incident and recovery is automatic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import structlog

from parley.providers.extras import require_extra
from parley.settings import RedisSettings

if TYPE_CHECKING:
    # Only for annotations: the ``redis`` extra is imported when PARLEY_REDIS_URL is set.
    from redis.asyncio import Redis

T = TypeVar("T")

# Idle pooled connections are PINGed before reuse after this long, so a connection silently
# dropped by a proxy/NAT fails at the health check rather than mid-command.
HEALTH_CHECK_INTERVAL_S = 30


def create_redis(url: str, settings: RedisSettings) -> Redis:
    """The process-wide client: one bounded pool, explicit timeouts, no automatic retries.

    A blocking pool makes a burst beyond ``max_connections`` wait (at most the connect
    timeout) for a free connection instead of failing at once and tripping the breaker.
    Raises ``MissingExtra`` when the ``redis`` extra is not installed.
    """
    require_extra("redis", extra="redis", reason="PARLEY_REDIS_URL is set")
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=settings.max_connections,
        timeout=settings.connect_timeout_s,
        socket_timeout=settings.socket_timeout_s,
        socket_connect_timeout=settings.connect_timeout_s,
        socket_keepalive=True,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        # Retries would multiply the latency of an outage; the guard decides when to retry.
        retry=Retry(NoBackoff(), 0),
        decode_responses=False,
    )
    return Redis.from_pool(pool)


def call_deadline_s(settings: RedisSettings) -> float:
    """Upper bound of one guarded call: pool wait + connect + write and read."""
    return 2 * settings.connect_timeout_s + 2 * settings.socket_timeout_s


class RedisGuard:
    """Circuit breaker around a Redis client: fail fast, log once, recover by itself.

    States: *ok* (every call goes out) and *degraded* (calls return None without touching
    the network until ``retry_after_s`` has passed since the last failure; then exactly one
    call probes, and its success closes the breaker). Use from one event loop only.
    """

    def __init__(
        self,
        client: Redis,
        *,
        retry_after_s: float,
        name: str = "redis",
        timeout_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if retry_after_s <= 0:
            raise ValueError("retry_after_s must be > 0")
        # A client exists, so the extra is installed; resolved once, not on every call.
        from redis.exceptions import RedisError

        self._errors: tuple[type[Exception], ...] = (RedisError, OSError)
        self.client = client
        self.name = name
        self._retry_after_s = retry_after_s
        self._timeout_s = timeout_s
        self._clock = clock
        self._degraded = False
        self._failed_at = 0.0
        self._degraded_since = 0.0
        self._probing = False
        self.round_trips = 0
        self.failures = 0
        self.skipped = 0
        self.incidents = 0

    def status(self) -> str:
        """``ok`` or ``degraded``."""
        return "degraded" if self._degraded else "ok"

    async def call(self, fn: Callable[[Redis], Awaitable[T]]) -> T | None:
        """Run ``fn`` (one network round trip) or return None when Redis is unavailable.

        None is also what a failed call returns, so callers treat it as a miss.
        """
        probe = False
        if self._degraded:
            if self._probing or self._clock() - self._failed_at < self._retry_after_s:
                self.skipped += 1
                return None
            probe = self._probing = True
        self.round_trips += 1
        try:
            async with asyncio.timeout(self._timeout_s):
                result = await fn(self.client)
        except self._errors as exc:  # OSError covers TimeoutError and socket errors
            self._fail(exc)
            return None
        finally:
            if probe:
                self._probing = False
        if probe:
            self._recover()
        return result

    async def ping(self) -> bool:
        """Whether Redis answers now (through the breaker, bounded by the timeouts)."""

        async def _ping(client: Redis) -> bool:
            return bool(await client.ping())

        return await self.call(_ping) is True

    def stats(self) -> dict[str, int]:
        """Calls that went out, failed, were skipped while degraded, and incidents so far."""
        return {
            "round_trips": self.round_trips,
            "failures": self.failures,
            "skipped": self.skipped,
            "incidents": self.incidents,
        }

    def _fail(self, exc: BaseException) -> None:
        self.failures += 1
        self._failed_at = self._clock()
        log = structlog.get_logger(__name__)
        if self._degraded:
            log.debug("redis_probe_failed", name=self.name, error=repr(exc))
            return
        self._degraded = True
        self._degraded_since = self._failed_at
        self.incidents += 1
        log.warning(
            "redis_degraded",
            name=self.name,
            error=repr(exc),
            retry_after_s=self._retry_after_s,
        )

    def _recover(self) -> None:
        # Only a probe (a call started while degraded) may close the breaker: a slow call
        # that began before the failure proves nothing about Redis now.
        if not self._degraded:
            return
        self._degraded = False
        structlog.get_logger(__name__).info(
            "redis_recovered", name=self.name, down_s=round(self._clock() - self._degraded_since, 3)
        )
