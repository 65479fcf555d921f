"""Cross-instance cache invalidation for credentials and access (Redis pub/sub).

Verified API keys, token families, readable-collection sets and decrypted provider keys are
cached per process so a request needs no database read. When one instance revokes a key,
ends a login, disables or demotes a user, changes a grant or a provider key, it drops its
own entries at once and publishes the event; every other instance drops the same entries
when the message arrives (milliseconds), instead of waiting for the cache TTL. The TTLs stay
as the bound when Redis is unavailable: after a lost subscription everything is flushed,
since messages may have been missed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import structlog

from parley.providers.extras import require_extra
from parley.providers.redis_support import RedisGuard
from parley.settings import RedisSettings

if TYPE_CHECKING:
    # Annotations only: the ``redis`` extra is imported when a Redis URL is configured.
    from redis.asyncio import Redis

log = structlog.get_logger(__name__)

Event = Mapping[str, str]
FLUSH_ALL: Event = {"all": "1"}


class Invalidations:
    """Publishes invalidation events and dispatches the ones other instances publish.

    Without Redis (the embedded default: one process) publishing does nothing.
    """

    def __init__(
        self,
        *,
        guard: RedisGuard | None = None,
        url: str | None = None,
        settings: RedisSettings | None = None,
    ) -> None:
        self._guard = guard
        self._url = url
        self._redis: type[Redis] | None = None
        if url is not None:
            require_extra("redis", extra="redis", reason="PARLEY_REDIS_URL is set")
            from redis.asyncio import Redis

            self._redis = Redis
        self._settings = settings or RedisSettings()
        self.channel = f"{self._settings.key_prefix}invalidate"
        self._pending: set[asyncio.Task[None]] = set()
        self.received = 0

    def publish(self, **event: str) -> None:
        """Tell the other instances (best effort, never blocks the caller)."""
        if self._guard is None:
            return
        payload = json.dumps(event, separators=(",", ":"))
        guard = self._guard

        async def send() -> None:
            async def call(client: Redis) -> int:
                return int(await client.publish(self.channel, payload))

            await guard.call(call)

        task = asyncio.get_running_loop().create_task(send())
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def run(self, dispatch: Callable[[Event], None]) -> None:
        """Listen until cancelled; reconnect with back-off, flushing after every gap."""
        if self._url is None or self._redis is None:
            return
        delay = 0.5
        first = True
        while True:
            # A dedicated connection without a read timeout: a subscription idles.
            client = self._redis.from_url(
                self._url,
                socket_connect_timeout=self._settings.connect_timeout_s,
                socket_keepalive=True,
            )
            try:
                async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.subscribe(self.channel)
                    if not first:
                        dispatch(FLUSH_ALL)  # what was published meanwhile is lost
                        log.info("invalidations_resubscribed")
                    first, delay = False, 0.5
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        try:
                            event = json.loads(message["data"])
                        except (TypeError, ValueError):
                            continue
                        if isinstance(event, dict):
                            self.received += 1
                            dispatch({str(k): str(v) for k, v in event.items()})
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis away: caches fall back to their TTLs
                if delay == 0.5:
                    log.warning("invalidations_unsubscribed", error=type(exc).__name__)
                first = False
            finally:
                await client.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def aclose(self) -> None:
        """Let in-flight publications finish."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)
