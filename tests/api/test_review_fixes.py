"""Defects found by the security review: each test pins the fix.

- deleting a session must not refund its tokens to the quota;
- an abandoned stream is billed (estimated) tokens, not zero;
- a key cannot outlive, or revoke keys wider than, the key that manages it;
- an admin's key without the ``admin`` scope does not see other tenants;
- a cached key stops working the moment it expires;
- dev mode refuses proxied requests.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from asgi_lifespan import LifespanManager

from parley.api.app import create_app
from parley.container import Container
from parley.db.models import ApiKeyRow
from parley.domain.auth import SYSTEM
from parley.errors import Unauthenticated
from parley.services.ingestion import UploadedFile
from parley.settings import Settings
from tests.conftest import bearer, make_user, per_request_state


async def _session(container: Container, user_id: str) -> tuple[str, str]:
    """A collection with one document and a session over it, both owned by ``user_id``."""
    actor = await container.auth.authenticate(
        (await container.auth.create_key(actor=SYSTEM, user_id=user_id, name="s")).secret
    )
    view = await container.collections.create(actor=actor, name="kb")
    job = await container.ingestion.submit(
        actor=actor,
        collection_id=view.row.id,
        files=[UploadedFile("bike.md", b"# Bike\n\nThe bike folds in ten seconds.")],
    )
    # The in-process runner may have claimed it already (fixtures with a running app).
    if await container.runner.run_once(job_id=job.id) is None:
        for _ in range(200):
            finished, _items = await container.collections.job(job.id, actor=actor)
            if finished.status in ("succeeded", "failed"):
                break
            await asyncio.sleep(0.05)
    finished, _items = await container.collections.job(job.id, actor=actor)
    assert finished.status == "succeeded"
    session = await container.sessions.create(actor=actor, collection_ids=[view.row.id])
    return view.row.id, session.row.id


async def test_deleting_a_session_does_not_refund_the_quota(
    client: httpx.AsyncClient, container: Container
) -> None:
    user_id, key = await make_user(container, "quota@example.com")
    _, sid = await _session(container, user_id)
    answer = await client.post(
        f"/v1/sessions/{sid}/messages", json={"content": "Does it fold?"}, headers=bearer(key)
    )
    assert answer.status_code == 201
    spent = answer.json()["usage"]["total_tokens"]
    assert spent > 0
    before = (await client.get("/v1/me/usage", headers=bearer(key))).json()
    assert before["day_total_tokens"] == spent
    assert (await client.delete(f"/v1/sessions/{sid}", headers=bearer(key))).status_code == 204
    after = (await client.get("/v1/me/usage", headers=bearer(key))).json()
    assert after["day_total_tokens"] == spent and after["month_total_tokens"] == spent


async def test_an_abandoned_stream_is_billed(container: Container) -> None:
    user = await container.accounts.create(email="leaver@example.com", password=None)
    actor = await container.auth.authenticate(
        (await container.auth.create_key(actor=SYSTEM, user_id=user.id, name="k")).secret
    )
    _, sid = await _session(container, user.id)
    turn = await container.chat.prepare(actor=actor, session_id=sid, content="Does it fold?")
    stream = container.chat.stream(turn)
    assert (await anext(stream))[0] == "sources"
    assert (await anext(stream))[0] == "token"
    await stream.aclose()  # the client went away before the provider reported usage
    usage = await container.quotas.usage(user.id)
    assert usage.day_input > 0 and usage.day_output > 0


async def test_a_key_cannot_outlive_or_overrule_the_key_that_manages_it(
    app_client: httpx.AsyncClient, container: Container
) -> None:
    user_id, full = await make_user(container, "keys@example.com")
    short = await container.auth.create_key(
        actor=SYSTEM,
        user_id=user_id,
        name="contractor",
        scopes=["chat"],
        expires_at=datetime.now(UTC) + timedelta(days=1),
    )
    auth = bearer(short.secret)
    made = await app_client.post("/v1/me/keys", json={"name": "forever"}, headers=auth)
    assert made.status_code == 201
    expires = datetime.fromisoformat(made.json()["expires_at"])
    assert expires <= short.row.expires_at.replace(tzinfo=UTC) + timedelta(seconds=1)
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    refused = await app_client.post(
        "/v1/me/keys", json={"name": "later", "expires_at": later}, headers=auth
    )
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    keys = (await app_client.get("/v1/me/keys", headers=bearer(full))).json()["items"]
    full_id = next(k["id"] for k in keys if set(k["scopes"]) == {"chat", "ingest"})
    revoke = await app_client.delete(f"/v1/me/keys/{full_id}", headers=auth)
    assert revoke.status_code == 403  # a chat-only key cannot lock its owner out
    assert (await app_client.get("/v1/me", headers=bearer(full))).status_code == 200


async def test_an_admin_key_without_the_admin_scope_sees_only_its_own(
    app_client: httpx.AsyncClient, container: Container
) -> None:
    owner_id, _ = await make_user(container, "tenant@example.com")
    cid, _ = await _session(container, owner_id)
    admin_id, _ = await make_user(container, "ops@example.com", role="admin")
    ci = await container.auth.create_key(
        actor=SYSTEM, user_id=admin_id, name="ci", scopes=["chat", "ingest"]
    )
    auth = bearer(ci.secret)
    assert (await app_client.get(f"/v1/collections/{cid}", headers=auth)).status_code == 404
    assert (await app_client.delete(f"/v1/collections/{cid}", headers=auth)).status_code == 404
    share = await app_client.post(
        f"/v1/collections/{cid}/grants", json={"user_id": admin_id}, headers=auth
    )
    assert share.status_code == 404
    listed = (await app_client.get("/v1/collections", headers=auth)).json()["items"]
    assert cid not in {c["id"] for c in listed}


async def test_a_cached_key_stops_at_its_expiry(container: Container) -> None:
    user_id, key = await make_user(container, "expiring@example.com")
    await container.auth.authenticate(key)  # now cached
    async with container.uow(write=True) as tx:
        row = (await tx.accounts.keys_of(user_id))[0]
        assert isinstance(row, ApiKeyRow)
        row.expires_at = datetime.now(UTC) + timedelta(milliseconds=50)
        await tx.commit()
    container.auth.forget(key_id=row.id)
    await container.auth.authenticate(key)  # re-cached with its expiry
    await asyncio.sleep(0.1)
    with pytest.raises(Unauthenticated):
        await container.auth.authenticate(key)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_dev_mode_refuses_proxied_requests(settings: Settings, container: Container) -> None:
    dev = settings.model_copy(update={"auth": "off"})
    app = create_app(dev, container=container)
    container.settings = dev
    async with LifespanManager(per_request_state(app)) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://parley.test") as c:
            assert (await c.get("/v1/me")).json()["auth"] == "dev"
            proxied = await c.get("/v1/me", headers={"X-Forwarded-For": "203.0.113.5"})
            assert proxied.status_code == 403
