"""Streams from model providers, guarded the same way for every adapter.

An adapter turns one attempt's vendor events into plain :class:`StreamDelta` pieces (text,
usage, and a ``finish_reason`` once the provider's final event arrived), translating vendor
errors as it goes. :func:`guarded_stream` then

- retries per :class:`RetryPolicy`, but only until the first text (text already sent to
  the client cannot be taken back);
- bounds every wait by the call's deadline (``ProviderTimeout`` when it passes);
- checks the end: no text at all is ``ProviderEmptyResponse``; text without the final event
  is ``ProviderStreamCut``, so a truncated answer is never taken for a complete one;
- yields the text, then exactly one last delta with usage and finish reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass

import structlog

from parley.domain.chat import StreamDelta, Usage
from parley.errors import ProviderError, ProviderStreamCut
from parley.providers.llm.retries import RetryPolicy, deadline_at
from parley.providers.llm.sdk_support import ProviderFaults

log = structlog.get_logger(__name__)

Attempt = Callable[[], AsyncGenerator[StreamDelta, None]]


@dataclass(frozen=True, slots=True)
class StreamCall:
    """One streamed call: how to start an attempt and what bounds it."""

    attempt: Attempt
    faults: ProviderFaults
    policy: RetryPolicy
    requested_deadline: float | None
    estimate: Callable[[str], Usage]
    """Usage from the answer's text, for servers that report none."""


async def guarded_stream(call: StreamCall) -> AsyncIterator[StreamDelta]:
    """Yield the text of the first attempt that produces some, then usage and finish reason."""
    deadline = deadline_at(call.faults.timeout_s, call.requested_deadline)
    pieces, first = await _first_text(call, deadline)
    text: list[str] = []
    usage: Usage | None = None
    finish: str | None = None
    try:
        piece: StreamDelta | None = first
        while piece is not None:
            usage = piece.usage or usage
            finish = piece.finish_reason or finish
            if piece.text:
                text.append(piece.text)
                yield StreamDelta(text=piece.text)
            try:
                piece = await _next(pieces, deadline, call.faults)
            except ProviderStreamCut:
                if finish is None:
                    raise
                # Only what follows the final event (usage, [DONE]) was lost: the answer is whole.
                log.warning("provider_stream_cut_after_finish", provider=call.faults.provider)
                piece = None
    finally:
        await pieces.aclose()
    if finish is None:
        raise call.faults.cut()
    yield StreamDelta(usage=usage or call.estimate("".join(text)), finish_reason=finish)


async def _first_text(
    call: StreamCall, deadline: float
) -> tuple[AsyncGenerator[StreamDelta, None], StreamDelta]:
    """Run attempts until one yields text; return it with the rest of its stream.

    Pieces before the first text (a role, usage so far) are folded into the returned one.
    """
    loop = asyncio.get_running_loop()
    number = 0
    while True:
        number += 1
        pieces = call.attempt()
        usage: Usage | None = None
        finish: str | None = None
        try:
            while True:
                piece = await _next(pieces, deadline, call.faults)
                if piece is None:
                    # Ended without text: a server that answers nothing is not asked again.
                    raise call.faults.empty()
                usage = piece.usage or usage
                finish = piece.finish_reason or finish
                if piece.text:
                    return pieces, StreamDelta(text=piece.text, usage=usage, finish_reason=finish)
        except ProviderError as failure:
            await pieces.aclose()
            wait = call.policy.delay_before_retry(failure, number)
            if wait is None or loop.time() + wait >= deadline:
                raise
            log.info(
                "provider_retry",
                provider=call.faults.provider,
                attempt=number,
                code=failure.code,
                status=failure.extra.get("status"),
                wait_s=round(wait, 3),
            )
            await asyncio.sleep(wait)
        except BaseException:
            await pieces.aclose()
            raise


async def _next(
    pieces: AsyncGenerator[StreamDelta, None], deadline: float, faults: ProviderFaults
) -> StreamDelta | None:
    """The next piece, or None at the end; ``ProviderTimeout`` once the deadline passes.

    The deadline wraps each wait rather than the whole generator: a timeout scope must not
    stay open across a ``yield``, where it would cancel the consumer instead.
    """
    try:
        async with asyncio.timeout_at(deadline):
            return await anext(pieces, None)
    except TimeoutError as exc:
        raise faults.timed_out() from exc
