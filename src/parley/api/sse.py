"""Server-sent events framing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


def encode_event(event: str, data: dict[str, Any]) -> bytes:
    """One SSE frame; JSON data never contains raw newlines, so one ``data:`` line suffices."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


async def frames(events: AsyncIterator[tuple[str, dict[str, Any]]]) -> AsyncIterator[bytes]:
    """Encode an ``(event, data)`` stream as SSE frames."""
    async for event, data in events:
        yield encode_event(event, data)
