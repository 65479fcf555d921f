"""Revocations reach every instance at once (Redis pub/sub), not after the cache TTL.

Two containers share PostgreSQL and Redis, as two ``parley serve`` processes do; each keeps
its own per-process caches of verified keys, logins and readable collections (TTLs far
longer than the test, so only the published invalidation can explain what is observed).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from parley.container import Container
from parley.domain.auth import SYSTEM
from parley.errors import Unauthenticated
from parley.providers.embeddings.fake import FakeEmbedder
from parley.providers.llm.fake import FakeLLM
from parley.providers.tokenizers.approx import ApproxTokenCounter
from parley.services.accounts import UserChange
from parley.settings import Settings


@pytest.fixture
async def pair(settings: Settings, backend: str) -> AsyncIterator[tuple[Container, Container]]:
    if backend != "postgres":
        pytest.skip("instances share state through PostgreSQL + Redis")
    settings.security.key_cache_ttl_s = 3600
    settings.security.access_cache_ttl_s = 3600
    built = [
        Container.build(
            settings, embedder=FakeEmbedder(64), llm=FakeLLM(), token_counter=ApproxTokenCounter()
        )
        for _ in range(2)
    ]
    for c in built:
        await c.prepare_database()
        await c.start_background(run_jobs=False)
    try:
        await _subscribed(built)
        yield built[0], built[1]
    finally:
        for c in built:
            await c.aclose()


async def _subscribed(containers: list[Container]) -> None:
    # Publish until every instance has received one message: all listeners are live.
    for _ in range(100):
        before = [c.invalidations.received for c in containers]
        containers[0].invalidations.publish(user_id="warm-up")
        await asyncio.sleep(0.05)
        if all(c.invalidations.received > n for c, n in zip(containers, before, strict=True)):
            return
    raise AssertionError("the invalidation listeners did not subscribe")


async def _eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("the other instance still trusts its cached entry")
        await asyncio.sleep(0.02)


async def _rejected(container: Container, credential: str) -> bool:
    try:
        await container.auth.authenticate(credential)
    except Unauthenticated:
        return True
    return False


async def test_a_revoked_key_fails_on_the_other_instance_at_once(
    pair: tuple[Container, Container],
) -> None:
    a, b = pair
    user = await a.accounts.create(email="ana@example.com", password=None)
    new = await a.auth.create_key(actor=SYSTEM, user_id=user.id, name="k")
    assert (await b.auth.authenticate(new.secret)).user_id == user.id  # now cached on B
    await a.auth.revoke_key(new.row.id, actor=SYSTEM)
    await _eventually(lambda: _rejected(b, new.secret))


async def test_disabling_a_user_and_logout_reach_the_other_instance(
    pair: tuple[Container, Container],
) -> None:
    a, b = pair
    user = await a.accounts.create(email="bo@example.com", password="a long passphrase")
    key = (await a.auth.create_key(actor=SYSTEM, user_id=user.id, name="k")).secret
    tokens = await a.auth.login(email="bo@example.com", password="a long passphrase")
    other = await a.auth.login(email="bo@example.com", password="a long passphrase")
    for credential in (key, tokens.access_token, other.access_token):
        await b.auth.authenticate(credential)  # cached on B
    principal = await a.auth.authenticate(tokens.access_token)
    await a.auth.logout(actor=principal)
    await _eventually(lambda: _rejected(b, tokens.access_token))
    assert not await _rejected(b, other.access_token)  # only that login ended
    await a.accounts.update(user.id, UserChange(disabled=True), actor=SYSTEM)
    await _eventually(lambda: _rejected(b, key))
    await _eventually(lambda: _rejected(b, other.access_token))


async def test_a_withdrawn_grant_stops_retrieval_on_the_other_instance(
    pair: tuple[Container, Container],
) -> None:
    a, b = pair
    owner = await a.accounts.create(email="own@example.com", password=None)
    guest = await a.accounts.create(email="gu@example.com", password=None)
    owner_p = await a.auth.authenticate(
        (await a.auth.create_key(actor=SYSTEM, user_id=owner.id, name="k")).secret
    )
    guest_p = await b.auth.authenticate(
        (await a.auth.create_key(actor=SYSTEM, user_id=guest.id, name="k")).secret
    )
    cid = (await a.collections.create(actor=owner_p, name="kb")).row.id
    await a.collections.share(cid, actor=owner_p, user_id=guest.id, permission="read")
    assert await b.access.filter_readable(guest_p, [cid]) == [cid]  # cached on B
    await a.collections.unshare(cid, actor=owner_p, user_id=guest.id)

    async def hidden() -> bool:
        return await b.access.filter_readable(guest_p, [cid]) == []

    # A cached set lacking an id is re-read, so check the cache itself was dropped: the
    # set held the id, and after the event the id is gone without a TTL expiry.
    await _eventually(hidden)
