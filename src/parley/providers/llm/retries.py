"""The one retry policy of calls to model providers, bounded by one deadline per call.

The vendor SDKs are built with ``max_retries=0``: they would otherwise retry on their own,
each attempt with the full timeout, so ``timeout_s=8`` could take three attempts and 25 s.
Here the whole call, retries and waits included, must end by its deadline
(``timeout_s`` from the start, or earlier if the request names an earlier one):

- retried, at most ``retries`` times: the server could not be reached, answered 408 or 5xx,
  or 429 asking for a wait no longer than ``max_delay_s``; the wait is the server's
  ``Retry-After`` when it gives one, else an exponential back-off (``base_delay_s``,
  doubling, capped at ``max_delay_s``, minus up to 25 % jitter);
- never retried: a timeout (the deadline is spent), a 429 asking for a longer wait (passed
  on to the client with its ``Retry-After``), other 4xx, and a malformed, empty or cut
  answer (the server misbehaves; asking again doubles its load and the caller's bill);
- no retry starts if its wait would end past the deadline: the last failure is raised;
- when the deadline passes during an attempt, the call fails with ``ProviderTimeout`` then.

A stream is retried only before its first text: once text is out, it cannot be taken back.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog

from parley.errors import (
    ProviderEmptyResponse,
    ProviderError,
    ProviderMalformedResponse,
    ProviderRateLimited,
    ProviderStreamCut,
    ProviderTimeout,
    ProviderUnavailable,
)

log = structlog.get_logger(__name__)

T = TypeVar("T")

DEFAULT_RETRIES = 2
_RETRIED_STATUSES = frozenset({408, 500, 502, 503, 504, 529})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how long to wait before asking a provider again (see the module doc)."""

    retries: int = DEFAULT_RETRIES
    base_delay_s: float = 0.25
    max_delay_s: float = 2.0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise ValueError("retries must be >= 0")

    def delay_before_retry(self, failure: ProviderError, attempt: int) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``, or None when ``failure`` is final."""
        if attempt > self.retries or not _retryable(failure):
            return None
        hinted = failure.extra.get("upstream_wait_s")
        if isinstance(hinted, int | float) and hinted >= 0:
            # The server's own wait, if short; a long one goes to the client instead.
            return float(hinted) if hinted <= self.max_delay_s else None
        backoff = min(self.base_delay_s * 2.0 ** (attempt - 1), self.max_delay_s)
        return backoff * (1 - 0.25 * random.random())  # jitter spreads the retries of many turns


def _retryable(failure: ProviderError) -> bool:
    if isinstance(failure, ProviderUnavailable | ProviderRateLimited):
        return True
    if isinstance(failure, ProviderTimeout | ProviderMalformedResponse | ProviderEmptyResponse):
        return False
    if isinstance(failure, ProviderStreamCut):
        return False
    return failure.extra.get("status") in _RETRIED_STATUSES


def deadline_at(timeout_s: float, requested: float | None) -> float:
    """The event-loop time a call must end by: ``timeout_s`` from now, or ``requested`` if
    that is earlier (a turn's deadline shared by its rewrite and its answer)."""
    own = asyncio.get_running_loop().time() + timeout_s
    return own if requested is None else min(own, requested)


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    deadline: float,
    timed_out: Callable[[], ProviderTimeout],
    provider: str,
) -> T:
    """Run ``attempt`` until it succeeds, ``policy`` says stop, or ``deadline`` passes.

    ``attempt`` raises ``ProviderError`` subclasses (vendor errors already translated);
    ``timed_out`` builds the error raised when the deadline passes during an attempt.
    """
    loop = asyncio.get_running_loop()
    number = 0
    while True:
        number += 1
        try:
            async with asyncio.timeout_at(deadline):
                return await attempt()
        except TimeoutError as exc:
            raise timed_out() from exc
        except ProviderError as failure:
            wait = policy.delay_before_retry(failure, number)
            if wait is None or loop.time() + wait >= deadline:
                raise
            log.info(
                "provider_retry",
                provider=provider,
                attempt=number,
                code=failure.code,
                status=failure.extra.get("status"),
                wait_s=round(wait, 3),
            )
            await asyncio.sleep(wait)
