"""The ``Cache`` port: bounded key/value storage for derived data (never the source of truth)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class Cache(Protocol):
    """A bounded, expiring cache of opaque values."""

    async def get(self, key: str) -> object | None:
        """The cached value, or None on a miss or after expiry."""
        ...

    async def set(self, key: str, value: object, *, ttl_s: float | None = None) -> None:
        """Store a value; ``ttl_s`` None means the cache's default."""
        ...

    async def delete(self, key: str) -> None:
        """Drop a key if present."""
        ...

    def stats(self) -> dict[str, int]:
        """Hit, miss and size counters."""
        ...
