"""Which collections a principal may read: the tenancy rule on the chat and search paths.

Owning a collection or holding a grant on it makes it readable; admins read everything. The
set of readable collection ids is cached per user for ``access_cache_ttl_s`` so a chat turn
needs no extra database round trip; a collection missing from the cached set triggers one
re-read (so a new grant or collection works at once), while a revoked grant stops serving
within the TTL on other instances and at once on the instance that revoked it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cachetools import TTLCache

from parley.domain.auth import Principal
from parley.errors import NotFound
from parley.services.invalidations import Invalidations
from parley.services.uow import UnitOfWorkFactory


class AccessPolicy:
    """Readable-collection checks with a short per-user cache."""

    def __init__(
        self, *, uow: UnitOfWorkFactory, ttl_s: float, bus: Invalidations | None = None
    ) -> None:
        self._uow = uow
        self._bus = bus or Invalidations()
        self._ttl = ttl_s
        self._cache: TTLCache[str, frozenset[str]] | None = (
            TTLCache(maxsize=20_000, ttl=ttl_s) if ttl_s > 0 else None
        )

    async def _load(self, user_id: str) -> frozenset[str]:
        async with self._uow() as tx:
            ids = frozenset(await tx.collections.readable_ids(user_id))
        if self._cache is not None:
            self._cache[user_id] = ids
        return ids

    async def filter_readable(self, actor: Principal, ids: Sequence[str]) -> list[str]:
        """``ids`` the actor may read, in order (hidden and unknown ones dropped)."""
        viewer = actor.viewer
        if viewer is None:
            return list(ids)
        known = self._cache.get(viewer) if self._cache is not None else None
        if known is None or any(cid not in known for cid in ids):
            known = await self._load(viewer)
        return [cid for cid in ids if cid in known]

    async def require_readable(self, actor: Principal, ids: Sequence[str]) -> list[str]:
        """``ids`` unchanged if the actor may read all of them, else NotFound for the first
        that is hidden (exactly as if it did not exist)."""
        allowed = set(await self.filter_readable(actor, ids))
        for cid in ids:
            if cid not in allowed:
                # repr: the id is the caller's text, possibly with characters JSON cannot encode
                raise NotFound(f"collection {cid!r} not found", field="collection_ids")
        return list(ids)

    def invalidate(self, user_id: str | None = None) -> None:
        """Forget cached sets (one user's, or everyone's) after a grant or collection change,
        here and on every other instance."""
        self._invalidate_local(user_id)
        self._bus.publish(access=user_id or "*")

    def apply(self, event: Mapping[str, str]) -> None:
        """An invalidation published by another instance (or a flush after a gap)."""
        if "all" in event:
            self._invalidate_local(None)
        elif "access" in event:
            self._invalidate_local(None if event["access"] == "*" else event["access"])
        elif "user_id" in event:
            self._invalidate_local(event["user_id"])

    def _invalidate_local(self, user_id: str | None) -> None:
        if self._cache is None:
            return
        if user_id is None:
            self._cache.clear()
        else:
            self._cache.pop(user_id, None)
