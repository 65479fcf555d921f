"""Which collections a principal may read, and what a collection reference means.

Owning a collection or holding a grant on it makes it readable; admins read everything. The
set of readable collection ids is cached per user for ``access_cache_ttl_s`` so a chat turn
needs no extra database round trip; a collection missing from the cached set triggers one
re-read (so a new grant or collection works at once), while a revoked grant stops serving
within the TTL on other instances and at once on the instance that revoked it.

Every route that names a collection accepts its id or its name; :func:`resolve_collections`
is the one place that turns such a reference into an id (see :func:`pick_collection` for
the rule).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cachetools import TTLCache

from parley.domain.auth import Principal
from parley.errors import Conflict, NotFound
from parley.repositories.collections import CollectionKey
from parley.services.invalidations import Invalidations
from parley.services.uow import UnitOfWork, UnitOfWorkFactory


def pick_collection(
    ref: str, candidates: Sequence[CollectionKey], *, actor: Principal, field: str | None = None
) -> str:
    """The id ``ref`` designates among ``candidates`` (collections the actor may read).

    1. A collection whose id is ``ref`` wins.
    2. Otherwise ``ref`` is a name (exact, case-sensitive): one readable collection with it
       is the answer; when several share it, the actor's own is preferred (names are
       unique per owner); if none of them is the actor's own, ``Conflict`` lists the ids.
    3. Nothing matches: ``NotFound``, the same answer as for a collection that exists but
       that the actor may not read, so names cannot be probed either.
    """
    if any(c.id == ref for c in candidates):
        return ref
    named = [c for c in candidates if c.name == ref]
    if len(named) > 1:
        own = [c for c in named if c.owner_id == actor.user_id]
        named = own or named
    if not named:
        # repr: the reference is the caller's text, possibly with characters JSON cannot encode
        raise NotFound(f"collection {ref!r} not found", field=field)
    if len(named) > 1:
        ids = sorted(c.id for c in named)
        raise Conflict(
            f"{len(ids)} collections you can read are named {ref!r}; use one of their ids: "
            + ", ".join(ids),
            field=field,
            candidates=ids,
        )
    return named[0].id


async def resolve_collections(
    tx: UnitOfWork, actor: Principal, refs: Sequence[str], *, field: str | None = None
) -> list[str]:
    """Collection ids for ``refs`` (ids or names) within an open unit of work, in order and
    without duplicates; one statement whatever the number of references."""
    candidates = await tx.collections.matching(refs, viewer=actor.viewer)
    ids = [pick_collection(ref, candidates, actor=actor, field=field) for ref in refs]
    return list(dict.fromkeys(ids))


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

    async def resolve(
        self, actor: Principal, refs: Sequence[str], *, field: str | None = None
    ) -> list[str]:
        """Ids of the collections ``refs`` designate (see :func:`pick_collection`).

        References that are all ids in the actor's cached readable set are answered without
        a database round trip; anything else (a name, an admin's reference) takes one.
        """
        viewer = actor.viewer
        known = self._cache.get(viewer) if self._cache is not None and viewer else None
        if known is not None and all(ref in known for ref in refs):
            return list(dict.fromkeys(refs))
        async with self._uow() as tx:
            return await resolve_collections(tx, actor, refs, field=field)

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
