"""Users' own provider API keys: stored encrypted, used in preference to the server's key.

A stored key is never returned by any endpoint nor logged; only the provider name and
dates are listed. Chat asks :meth:`ProviderKeyService.llm_for` which model client to use: a
client built with the user's key when the server's LLM provider is one the user has a key
for, else the server's own. Decrypted keys and the clients built from them are cached
briefly in-process so a turn adds no database round trip.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

import structlog
from cachetools import LRUCache, TTLCache
from pydantic import SecretStr
from sqlalchemy.exc import IntegrityError

from parley.db.base import utcnow
from parley.db.models import ProviderKeyRow
from parley.domain.auth import Principal
from parley.errors import Conflict, InvalidInput, NotFound
from parley.providers.llm.base import LLM
from parley.services.crypto import SecretBox, SecretDecryptError
from parley.services.invalidations import Invalidations
from parley.services.uow import UnitOfWorkFactory
from parley.settings import LLMSettings

log = structlog.get_logger(__name__)

PROVIDERS: tuple[str, ...] = ("openai", "anthropic")
_MAX_KEY_CHARS = 512


@dataclass(frozen=True, slots=True)
class ProviderKeyInfo:
    """What may be shown about a stored key: never the key itself."""

    provider: str
    created_at: datetime
    updated_at: datetime


class ProviderKeyService:
    """Store, list, delete and use users' provider keys."""

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        box: SecretBox,
        server_llm: LLM,
        llm_settings: LLMSettings,
        cache_ttl_s: float = 30.0,
        factory: Callable[[str], LLM] | None = None,
        provider: str | None = None,
        bus: Invalidations | None = None,
    ) -> None:
        """``factory`` builds an LLM client for an API key (default: the configured
        provider's adapter with that key); ``provider`` overrides which stored key applies."""
        self._uow = uow
        self._bus = bus or Invalidations()
        self._box = box
        self._server = server_llm
        self._provider = provider or llm_settings.provider
        self._factory = factory or _adapter_factory(llm_settings)
        self._keys: TTLCache[str, str | None] = TTLCache(
            maxsize=20_000, ttl=max(cache_ttl_s, 0.001)
        )
        self._closing: set[asyncio.Task[None]] = set()
        self._clients: LRUCache[str, LLM] = _ClosingLRU(maxsize=256, on_evict=self._close_later)

    def _forget(self, user_id: str) -> None:
        self._keys.pop(user_id, None)
        self._bus.publish(provider_user=user_id)

    def apply(self, event: Mapping[str, str]) -> None:
        """An invalidation published by another instance (or a flush after a gap)."""
        if "all" in event:
            self._keys.clear()
        for name in ("provider_user", "user_id"):
            if name in event:
                self._keys.pop(event[name], None)

    @property
    def applies(self) -> bool:
        """Whether the server's LLM provider can use users' keys at all."""
        return self._provider in PROVIDERS

    async def put(self, *, actor: Principal, provider: str, api_key: str) -> ProviderKeyInfo:
        """Store (or replace) the actor's key for ``provider``, encrypted."""
        user_id = _user(actor)
        if provider not in PROVIDERS:
            raise InvalidInput(f"provider must be one of {', '.join(PROVIDERS)}", field="provider")
        key = api_key.strip()
        if not key or len(key) > _MAX_KEY_CHARS or any(c.isspace() for c in key):
            raise InvalidInput("api_key must be 1..512 non-blank characters", field="api_key")
        ciphertext = self._box.encrypt(key, context=f"{user_id}:{provider}")
        now = utcnow()
        async with self._uow(write=True) as tx:
            row = await tx.accounts.provider_key(user_id, provider)
            if row is None:
                row = ProviderKeyRow(
                    user_id=user_id, provider=provider, ciphertext=ciphertext, created_at=now
                )
                try:
                    await tx.accounts.put_provider_key(row)
                except IntegrityError as exc:
                    raise Conflict("a concurrent update of this key won; retry") from exc
            else:
                row.ciphertext = ciphertext
                row.updated_at = now
            await tx.commit()
        self._forget(user_id)
        return ProviderKeyInfo(provider, row.created_at, row.updated_at or now)

    async def list(self, *, actor: Principal) -> list[ProviderKeyInfo]:
        """Which providers the actor has a key for (names and dates only)."""
        user_id = _user(actor)
        async with self._uow() as tx:
            rows = await tx.accounts.provider_keys(user_id)
        return [ProviderKeyInfo(r.provider, r.created_at, r.updated_at) for r in rows]

    async def delete(self, *, actor: Principal, provider: str) -> None:
        """Forget the actor's key for ``provider``."""
        user_id = _user(actor)
        async with self._uow(write=True) as tx:
            if not await tx.accounts.delete_provider_key(user_id, provider):
                raise NotFound(f"no {provider} key stored")
            await tx.commit()
        self._forget(user_id)

    async def llm_for(self, actor: Principal) -> LLM:
        """The model client for the actor's turns: user key > server key."""
        if not self.applies or actor.user_id is None:
            return self._server
        key = await self._key(actor.user_id)
        if key is None:
            return self._server
        # Cached by a digest of the key, never the key itself.
        tag = hashlib.sha256(f"{actor.user_id}:{key}".encode()).hexdigest()
        client = self._clients.get(tag)
        if client is None:
            client = self._factory(key)
            self._clients[tag] = client
        return client

    async def _key(self, user_id: str) -> str | None:
        if user_id in self._keys:
            return self._keys[user_id]
        async with self._uow() as tx:
            row = await tx.accounts.provider_key(user_id, self._provider)
        key: str | None = None
        if row is not None:
            try:
                key = self._box.decrypt(row.ciphertext, context=f"{user_id}:{self._provider}")
            except SecretDecryptError:
                # Wrong PARLEY_ENCRYPTION_KEY or a tampered row: fall back to the server key.
                log.warning("provider_key_unreadable", user_id=user_id, provider=self._provider)
        self._keys[user_id] = key
        return key

    def _close_later(self, client: LLM) -> None:
        # An evicted client still holds pooled connections: close it off the request path.
        task = asyncio.get_running_loop().create_task(_close_quietly(client))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """Close the per-user clients."""
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
        clients = list(self._clients.values())
        self._clients.clear()
        for client in clients:
            try:
                await client.aclose()
            except Exception:
                log.warning("close_failed", exc_info=True)


class _ClosingLRU(LRUCache[str, LLM]):
    """An LRU of clients that hands each evicted client to ``on_evict`` (to be closed)."""

    def __init__(self, *, maxsize: int, on_evict: Callable[[LLM], None]) -> None:
        super().__init__(maxsize=maxsize)
        self._on_evict = on_evict

    def popitem(self) -> tuple[str, LLM]:
        """Evict the least recently used client and pass it on to be closed."""
        key, client = super().popitem()
        self._on_evict(client)
        return key, client


async def _close_quietly(client: LLM) -> None:
    try:
        await client.aclose()
    except Exception:
        log.warning("close_failed", exc_info=True)


def _user(actor: Principal) -> str:
    if actor.user_id is None:
        raise InvalidInput("provider keys belong to user accounts; sign in as a user")
    return actor.user_id


def _adapter_factory(settings: LLMSettings) -> Callable[[str], LLM]:
    def build(key: str) -> LLM:
        from parley.providers.registry import build_llm

        return build_llm(settings.model_copy(update={"api_key": SecretStr(key)}))

    return build
