"""Users' provider keys (encrypted, never shown nor logged, user key > server key) and the
audit log of admin and sharing actions (recorded once per success, filterable, admin-only)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import text

from parley.api.app import create_app
from parley.container import Container
from parley.domain.auth import SYSTEM, Principal
from parley.logging import configure_logging
from parley.providers.embeddings.fake import FakeEmbedder
from parley.providers.llm.fake import FakeLLM
from parley.providers.tokenizers.approx import ApproxTokenCounter
from parley.services.crypto import SecretBox, SecretDecryptError
from parley.services.provider_keys import ProviderKeyService
from parley.services.secrets import resolve_encryption_key, resolve_jwt_secret
from parley.settings import Settings
from tests.conftest import bearer, make_user

USER_KEY = "sk-test-USERKEY-1234567890abcdef"
# The distinctive middle part: found in any output that holds the key, even partly masked.
KEY_MARK = "USERKEY-1234567890abcdef"


# --- helpers -----------------------------------------------------------------------------------


def box_for(settings: Settings) -> SecretBox:
    """The same box the container encrypts provider keys with."""
    return SecretBox(resolve_encryption_key(settings, resolve_jwt_secret(settings)))


async def ciphertexts(container: Container) -> list[tuple[str, str, str]]:
    """(user_id, provider, ciphertext) of every stored provider key, read with raw SQL."""
    async with container.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT user_id, provider, ciphertext FROM provider_keys ORDER BY id")
        )
        return [(str(r[0]), str(r[1]), str(r[2])) for r in rows]


async def member(container: Container, email: str) -> tuple[str, dict[str, str], Principal]:
    """(user id, auth headers, principal) for a new member."""
    uid, key = await make_user(container, email)
    return uid, bearer(key), await container.auth.authenticate(key)


def log_text(err: str) -> str:
    # Every line must be a JSON log line (so nothing bypassed the configured pipeline).
    for line in err.splitlines():
        if line.strip():
            json.loads(line)
    return err


@pytest.fixture
def json_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """Logging as in production (JSON on stderr); call the fixture to read what was logged."""
    configure_logging(level="debug", json=True, cache=False)
    capsys.readouterr()
    try:
        yield lambda: log_text(capsys.readouterr().err)
    finally:
        configure_logging(level="info", json=False, cache=False)


# --- provider keys: storage, listing, encryption ------------------------------------------------


async def test_stored_provider_key_is_never_returned_and_encrypted_at_rest(
    app_client: httpx.AsyncClient, container: Container, settings: Settings
) -> None:
    uid, auth, _ = await member(container, "owner@example.com")
    other_uid, _, _ = await member(container, "other@example.com")

    r = await app_client.put(
        "/v1/me/provider-keys/openai", json={"api_key": USER_KEY}, headers=auth
    )
    assert r.status_code == 200, r.text
    assert KEY_MARK not in r.text and "api_key" not in r.json()
    assert r.json()["provider"] == "openai"

    listed = await app_client.get("/v1/me/provider-keys", headers=auth)
    assert [k["provider"] for k in listed.json()] == ["openai"]
    assert set(listed.json()[0]) == {"provider", "created_at", "updated_at"}
    me = await app_client.get("/v1/me", headers=auth)
    assert me.json()["provider_keys"] == ["openai"]
    for response in (listed, me):
        assert KEY_MARK not in response.text

    # Replacing keeps one row; the other user has none.
    replaced = "sk-test-REPLACED-abcdef1234567890"
    r = await app_client.put(
        "/v1/me/provider-keys/openai", json={"api_key": replaced}, headers=auth
    )
    assert r.status_code == 200 and "REPLACED" not in r.text
    r = await app_client.put(
        "/v1/me/provider-keys/openai", json={"api_key": USER_KEY}, headers=auth
    )
    assert r.status_code == 200

    rows = await ciphertexts(container)
    assert [(u, p) for u, p, _ in rows] == [(uid, "openai")]
    ((_, _, sealed),) = rows
    assert KEY_MARK not in sealed and "sk-test" not in sealed
    assert sealed.startswith("v1:")
    async with container.engine.connect() as conn:
        dump = " ".join(
            str(v) for row in await conn.execute(text("SELECT * FROM provider_keys")) for v in row
        )
    assert KEY_MARK not in dump

    box = box_for(settings)
    assert box.decrypt(sealed, context=f"{uid}:openai") == USER_KEY
    # Bound to its owner and provider: another user's (or provider's) context cannot read it.
    with pytest.raises(SecretDecryptError):
        box.decrypt(sealed, context=f"{other_uid}:openai")
    with pytest.raises(SecretDecryptError):
        box.decrypt(sealed, context=f"{uid}:anthropic")

    other_view = await app_client.get(
        "/v1/me/provider-keys", headers=bearer((await make_user(container, "third@example.com"))[1])
    )
    assert other_view.json() == []

    deleted = await app_client.delete("/v1/me/provider-keys/openai", headers=auth)
    assert deleted.status_code == 204
    assert (await app_client.get("/v1/me", headers=auth)).json()["provider_keys"] == []
    assert await ciphertexts(container) == []
    missing = await app_client.delete("/v1/me/provider-keys/openai", headers=auth)
    assert missing.status_code == 404


async def test_provider_key_input_is_validated(
    app_client: httpx.AsyncClient, container: Container
) -> None:
    _, auth, _ = await member(container, "val@example.com")
    unknown = await app_client.put(
        "/v1/me/provider-keys/acme", json={"api_key": USER_KEY}, headers=auth
    )
    assert unknown.status_code == 422 and KEY_MARK not in unknown.text
    blank = await app_client.put(
        "/v1/me/provider-keys/openai", json={"api_key": "has space inside"}, headers=auth
    )
    assert blank.status_code == 422
    assert (
        await app_client.put("/v1/me/provider-keys/openai", json={"api_key": USER_KEY})
    ).status_code == 401
    assert await ciphertexts(container) == []


async def test_provider_key_never_reaches_the_logs(
    app_client: httpx.AsyncClient,
    container: Container,
    settings: Settings,
    json_logs: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, auth, actor = await member(container, "logged@example.com")
    path = "/v1/me/provider-keys/openai"

    ok = await app_client.put(path, json={"api_key": USER_KEY}, headers=auth)
    assert ok.status_code == 200
    # Refused by the service, and refused by request validation (the key as a wrong type).
    assert (
        await app_client.put("/v1/me/provider-keys/acme", json={"api_key": USER_KEY}, headers=auth)
    ).status_code == 422
    invalid = await app_client.put(path, json={"api_key": [USER_KEY]}, headers=auth)
    assert invalid.status_code == 422 and KEY_MARK not in invalid.text
    # The stored key is used (decrypted) by the service: still nothing logged.
    await container.provider_keys.list(actor=actor)

    # An unexpected failure whose message carries the request body, as an error path that
    # logs what it was given would: the 500 is logged with its traceback, redacted.
    async def explode(*, actor: Principal, provider: str, api_key: str) -> None:
        body = {"provider": provider, "api_key": api_key}
        raise RuntimeError(f"could not store {body!r}; raw body={json.dumps(body)}")

    monkeypatch.setattr(container.provider_keys, "put", explode)
    # A client that gets the 500 as a real one would (app_client re-raises app errors).
    app = create_app(settings, container=container)
    app.state.container = container
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://parley.test") as raw:
        crashed = await raw.put(path, json={"api_key": USER_KEY}, headers=auth)
    assert crashed.status_code == 500 and KEY_MARK not in crashed.text
    assert crashed.json()["code"] == "internal_error"

    logged = json_logs()
    assert "unhandled_error" in logged and "could not store" in logged, logged
    assert KEY_MARK not in logged
    assert "1234567890abcdef" not in logged


async def test_provider_key_logged_under_another_shape_is_masked(
    json_logs: Callable[[], str],
) -> None:
    # A key without a recognisable prefix is masked by the field name it travels under.
    import structlog

    plain = "AbCdEf0123456789-plain-provider-secret"
    log = structlog.get_logger("test")
    log.error("request_failed", body={"api_key": plain})
    log.error("request_failed", body=json.dumps({"api_key": plain}))
    log.error(f"bad request body {{'api_key': '{plain}'}}")
    assert plain not in json_logs()


# --- precedence: user key > server key ---------------------------------------------------------


class RecordingFactory:
    """Builds a distinguishable FakeLLM per API key and records the keys it was given."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.clients: list[FakeLLM] = []

    def __call__(self, key: str) -> FakeLLM:
        self.keys.append(key)
        client = FakeLLM(reply=f"answered with user key #{len(self.keys)}")
        self.clients.append(client)
        return client


def user_key_service(
    container: Container, settings: Settings, server: FakeLLM, factory: RecordingFactory
) -> ProviderKeyService:
    """A service as the container builds it, but for the ``openai`` provider with fakes."""
    return ProviderKeyService(
        uow=container.uow,
        box=box_for(settings),
        server_llm=server,
        llm_settings=settings.llm,
        provider="openai",
        factory=factory,
    )


async def test_user_key_takes_precedence_over_the_server_key(
    app_client: httpx.AsyncClient, container: Container, settings: Settings, fake_llm: FakeLLM
) -> None:
    _, auth, with_key = await member(container, "byok@example.com")
    _, _, without_key = await member(container, "serverkey@example.com")
    r = await app_client.put(
        "/v1/me/provider-keys/openai", json={"api_key": USER_KEY}, headers=auth
    )
    assert r.status_code == 200

    factory = RecordingFactory()
    service = user_key_service(container, settings, fake_llm, factory)
    assert service.applies
    try:
        mine = await service.llm_for(with_key)
        assert factory.keys == [USER_KEY] and mine is factory.clients[0]
        assert await service.llm_for(with_key) is mine  # cached: built once
        assert await service.llm_for(without_key) is fake_llm
        assert await service.llm_for(SYSTEM) is fake_llm  # no user account: server key
        assert factory.keys == [USER_KEY]

        # Deleting the key falls back to the server key at once.
        await service.delete(actor=with_key, provider="openai")
        assert await service.llm_for(with_key) is fake_llm
        # And storing one again is used at once, with the new key.
        await service.put(
            actor=with_key, provider="openai", api_key="sk-test-SECOND-0000111122223333"
        )
        again = await service.llm_for(with_key)
        assert factory.keys[-1] == "sk-test-SECOND-0000111122223333" and again is not fake_llm
        # A key for another provider than the server's does not apply.
        await service.delete(actor=with_key, provider="openai")
        await service.put(actor=with_key, provider="anthropic", api_key="sk-ant-0123456789abcdef0")
        assert await service.llm_for(with_key) is fake_llm
    finally:
        await service.aclose()
    assert all(c.closed for c in factory.clients)


async def test_a_key_copied_to_another_user_is_not_used(
    app_client: httpx.AsyncClient, container: Container, settings: Settings, fake_llm: FakeLLM
) -> None:
    uid_a, auth_a, _ = await member(container, "victim@example.com")
    uid_b, auth_b, actor_b = await member(container, "copier@example.com")
    for auth, key in ((auth_a, USER_KEY), (auth_b, "sk-test-BOBSKEY-abcdef0123456789")):
        r = await app_client.put("/v1/me/provider-keys/openai", json={"api_key": key}, headers=auth)
        assert r.status_code == 200
    # Someone with database access copies A's ciphertext into B's row.
    async with container.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE provider_keys SET ciphertext = "
                "(SELECT ciphertext FROM provider_keys WHERE user_id = :a) WHERE user_id = :b"
            ),
            {"a": uid_a, "b": uid_b},
        )
    factory = RecordingFactory()
    service = user_key_service(container, settings, fake_llm, factory)
    try:
        assert await service.llm_for(actor_b) is fake_llm
        assert factory.keys == []
    finally:
        await service.aclose()


async def test_chat_turns_use_the_users_own_key(
    app_client: httpx.AsyncClient,
    container: Container,
    settings: Settings,
    fake_llm: FakeLLM,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The container's LLM is the fake provider (no user keys apply); swap in a service for
    # ``openai`` so a real turn goes through the precedence rule end to end.
    factory = RecordingFactory()
    service = user_key_service(container, settings, fake_llm, factory)
    monkeypatch.setattr(container.chat, "_llms", service)
    monkeypatch.setattr(container, "provider_keys", service)

    async def turn(auth: dict[str, str], actor: Principal) -> str:
        view = await container.collections.create(actor=actor, name="kb")
        session = await container.sessions.create(actor=actor, collection_ids=[view.row.id])
        r = await app_client.post(
            f"/v1/sessions/{session.row.id}/messages", json={"content": "hi?"}, headers=auth
        )
        assert r.status_code == 201, r.text
        return str(r.json()["content"])

    try:
        _, auth_a, actor_a = await member(container, "a@example.com")
        _, auth_b, actor_b = await member(container, "b@example.com")
        r = await app_client.put(
            "/v1/me/provider-keys/openai", json={"api_key": USER_KEY}, headers=auth_a
        )
        assert r.status_code == 200
        assert await turn(auth_a, actor_a) == "answered with user key #1"
        assert factory.keys == [USER_KEY] and not fake_llm.requests
        server_answer = await turn(auth_b, actor_b)
        assert "user key" not in server_answer and fake_llm.requests
    finally:
        await service.aclose()


# --- audit log ---------------------------------------------------------------------------------


async def audit(client: httpx.AsyncClient, **params: Any) -> list[dict[str, Any]]:
    r = await client.get("/v1/admin/audit", params={"limit": 200, **params})
    assert r.status_code == 200, r.text
    assert r.json()["next_cursor"] is None
    return list(r.json()["items"])


async def test_admin_actions_are_audited_with_actor_target_ip_and_request_id(
    client: httpx.AsyncClient, container: Container
) -> None:
    admin_id = (await client.get("/v1/me")).json()["id"]
    done: list[tuple[str, str, str]] = []  # (action, target id, request id)

    def check(r: httpx.Response, status: int) -> httpx.Response:
        assert r.status_code == status, r.text
        return r

    r = check(
        await client.post(
            "/v1/admin/users",
            json={
                "email": "new@example.com",
                "password": "a long enough password",
                "role": "member",
            },
        ),
        201,
    )
    new_id = r.json()["id"]
    done.append(("user.create", new_id, r.headers["x-request-id"]))
    r = check(await client.patch(f"/v1/admin/users/{new_id}", json={"role": "admin"}), 200)
    done.append(("user.update", new_id, r.headers["x-request-id"]))

    key = await container.auth.create_key(actor=SYSTEM, user_id=new_id, name="to revoke")
    r = check(await client.delete(f"/v1/admin/keys/{key.row.id}"), 204)
    done.append(("key.revoke", key.row.id, r.headers["x-request-id"]))
    assert (await client.get("/v1/me", headers=bearer(key.secret))).status_code == 401

    shared = check(await client.post("/v1/collections", json={"name": "shared"}), 201).json()["id"]
    r = check(
        await client.post(
            f"/v1/collections/{shared}/grants", json={"user_id": new_id, "permission": "read"}
        ),
        201,
    )
    done.append(("collection.share", shared, r.headers["x-request-id"]))
    gone = check(await client.post("/v1/collections", json={"name": "gone"}), 201).json()["id"]
    r = check(await client.delete(f"/v1/collections/{gone}"), 204)
    done.append(("collection.delete", gone, r.headers["x-request-id"]))

    doomed, _ = await make_user(container, "doomed@example.com")
    r = check(await client.delete(f"/v1/admin/users/{doomed}"), 204)
    done.append(("user.delete", doomed, r.headers["x-request-id"]))

    items = await audit(client)
    # Newest first; exactly one record per action, each with who, what, where from.
    assert [(i["action"], i["target_id"], i["request_id"]) for i in items] == done[::-1]
    for item in items:
        assert item["actor_id"] == admin_id
        assert item["actor_key_id"]
        assert item["ip"] == "127.0.0.1"
        # Times carry their offset on every backend (SQLite returns them without one).
        assert datetime.fromisoformat(item["created_at"]).utcoffset() == timedelta(0)
    listed = (await client.get("/v1/admin/users")).json()["items"]
    assert all(datetime.fromisoformat(u["created_at"]).utcoffset() == timedelta(0) for u in listed)
    by_action = {i["action"]: i for i in items}
    assert by_action["user.create"]["target_type"] == "user"
    assert by_action["user.create"]["detail"] == {"role": "member"}
    assert by_action["user.update"]["detail"] == {"role": "admin"}
    assert by_action["key.revoke"]["target_type"] == "api_key"
    assert by_action["collection.share"]["detail"] == {"user_id": new_id, "permission": "read"}
    assert by_action["collection.delete"]["target_type"] == "collection"
    # No secret reaches the audit log (the created user's password, say).
    assert "a long enough password" not in json.dumps(items)


async def test_audit_detail_never_holds_a_password(
    client: httpx.AsyncClient, container: Container
) -> None:
    uid, _ = await make_user(container, "pw@example.com", password="the first password")
    r = await client.patch(
        f"/v1/admin/users/{uid}", json={"password": "the second password", "disabled": True}
    )
    assert r.status_code == 200, r.text
    (item,) = await audit(client, action="user.update")
    assert item["detail"] == {"password": "changed", "disabled": True}
    assert "second password" not in json.dumps(item)


async def test_audit_filters_and_pagination(
    client: httpx.AsyncClient, container: Container
) -> None:
    admin_id = (await client.get("/v1/me")).json()["id"]
    ids = []
    for n in range(3):
        r = await client.post(
            "/v1/admin/users",
            json={"email": f"u{n}@example.com", "password": "a long enough password"},
        )
        assert r.status_code == 201
        ids.append(r.json()["id"])
    mark = datetime.now(UTC)
    assert (
        await client.patch(f"/v1/admin/users/{ids[0]}", json={"role": "admin"})
    ).status_code == 200
    assert (await client.delete(f"/v1/admin/users/{ids[2]}")).status_code == 204
    # A member's own sharing is audited too, under their id.
    member_id, member_key = await make_user(container, "sharer@example.com")
    as_member = bearer(member_key)
    cid = (await client.post("/v1/collections", json={"name": "mine"}, headers=as_member)).json()[
        "id"
    ]
    shared = await client.post(
        f"/v1/collections/{cid}/grants", json={"user_id": ids[1]}, headers=as_member
    )
    assert shared.status_code == 201, shared.text

    everything = await audit(client)
    assert [i["action"] for i in everything] == [
        "collection.share",
        "user.delete",
        "user.update",
        "user.create",
        "user.create",
        "user.create",
    ]
    created = await audit(client, action="user.create")
    assert [i["target_id"] for i in created] == ids[::-1]
    users = await audit(client, action="user.*")
    assert {i["action"] for i in users} == {"user.create", "user.update", "user.delete"}
    assert len(users) == 5
    assert await audit(client, action="user.") == []
    assert await audit(client, action="user%") == []  # no LIKE wildcards sneak in
    assert await audit(client, action="collection.*") == everything[:1]

    assert len(await audit(client, actor_id=admin_id)) == 5
    by_member = await audit(client, actor_id=member_id)
    assert [(i["action"], i["target_id"]) for i in by_member] == [("collection.share", cid)]
    assert [i["action"] for i in await audit(client, target_id=ids[0])] == [
        "user.update",
        "user.create",
    ]
    assert await audit(client, target_id="nobody") == []

    later = await audit(client, since=mark.isoformat())
    assert [i["action"] for i in later] == ["collection.share", "user.delete", "user.update"]
    earlier = await audit(client, until=mark.isoformat())
    assert [i["action"] for i in earlier] == ["user.create"] * 3
    both = await audit(client, since=mark.isoformat(), until=datetime.now(UTC).isoformat())
    assert both == later
    # The same instant written with another UTC offset, or without one (read as UTC).
    shifted = mark.astimezone(timezone(timedelta(hours=-5)))
    assert await audit(client, since=shifted.isoformat()) == later
    assert await audit(client, until=shifted.isoformat()) == earlier
    naive = mark.replace(tzinfo=None).isoformat()
    assert await audit(client, since=naive) == later
    assert await audit(client, until=naive) == earlier
    combined = await audit(client, action="user.*", since=mark.isoformat(), actor_id=admin_id)
    assert [i["action"] for i in combined] == ["user.delete", "user.update"]

    # Pages of two, following the cursor, give every record once, newest first.
    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = await client.get("/v1/admin/audit", params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["items"]) <= 2
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(pages) == 3
    assert [i for page in pages for i in page] == everything
    # The cursor keeps the filters' meaning when combined with them.
    first = (
        await client.get("/v1/admin/audit", params={"limit": 1, "action": "user.create"})
    ).json()
    rest = await client.get(
        "/v1/admin/audit",
        params={"limit": 200, "action": "user.create", "cursor": first["next_cursor"]},
    )
    assert [i["target_id"] for i in first["items"] + rest.json()["items"]] == ids[::-1]
    bad = await client.get("/v1/admin/audit", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 422


async def test_audit_route_is_for_admins_only(
    client: httpx.AsyncClient, app_client: httpx.AsyncClient, container: Container
) -> None:
    _, member_key = await make_user(container, "curious@example.com")
    r = await app_client.get("/v1/admin/audit", headers=bearer(member_key))
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    assert (
        await app_client.get("/v1/admin/audit", headers={"Authorization": ""})
    ).status_code == 401
    # An admin's key without the admin scope is refused too.
    admin_id, _ = await make_user(container, "scoped@example.com", role="admin")
    narrow = await container.auth.create_key(
        actor=SYSTEM, user_id=admin_id, name="chat only", scopes=["chat"]
    )
    r = await app_client.get("/v1/admin/audit", headers=bearer(narrow.secret))
    assert r.status_code == 403


async def test_failed_or_refused_admin_actions_are_not_recorded(
    client: httpx.AsyncClient, app_client: httpx.AsyncClient, container: Container
) -> None:
    assert (await client.delete("/v1/admin/users/doesnotexist")).status_code == 404
    assert (
        await client.patch("/v1/admin/users/doesnotexist", json={"role": "admin"})
    ).status_code == 404
    assert (await client.delete("/v1/admin/keys/doesnotexist")).status_code == 404
    assert (await client.delete("/v1/collections/doesnotexist")).status_code == 404
    body = {"email": "dup@example.com", "password": "a long enough password"}
    assert (await client.post("/v1/admin/users", json=body)).status_code == 201
    assert (await client.post("/v1/admin/users", json=body)).status_code == 409
    # A user who still owns a collection cannot be deleted.
    owner_id, owner_key = await make_user(container, "owner@example.com")
    made = await app_client.post(
        "/v1/collections", json={"name": "kept"}, headers=bearer(owner_key)
    )
    assert made.status_code == 201
    assert (await client.delete(f"/v1/admin/users/{owner_id}")).status_code == 409
    # A member calling an admin route is refused before anything happens.
    r = await app_client.delete(f"/v1/admin/users/{owner_id}", headers=bearer(owner_key))
    assert r.status_code == 403
    # Sharing a collection that is not yours answers 404 and records nothing.
    _, stranger_key = await make_user(container, "stranger@example.com")
    r = await app_client.post(
        f"/v1/collections/{made.json()['id']}/grants",
        json={"user_id": owner_id},
        headers=bearer(stranger_key),
    )
    assert r.status_code == 404

    items = await audit(client)
    assert [i["action"] for i in items] == ["user.create"]


async def test_audit_records_the_client_address_behind_a_trusted_proxy(
    settings: Settings,
) -> None:
    proxied = settings.model_copy(
        update={"security": settings.security.model_copy(update={"trusted_proxies": ["10.0.0.1"]})}
    )
    container = Container.build(
        proxied,
        embedder=FakeEmbedder(dimension=64),
        llm=FakeLLM(),
        token_counter=ApproxTokenCounter(),
    )
    try:
        await container.prepare_database()
        _, key = await make_user(container, "root@example.com", role="admin")
        app = create_app(proxied, container=container)
        async with LifespanManager(app) as manager:
            for peer, expected in (("10.0.0.1", "198.51.100.7"), ("192.0.2.1", "192.0.2.1")):
                transport = httpx.ASGITransport(app=manager.app, client=(peer, 40000))
                async with httpx.AsyncClient(
                    transport=transport, base_url="http://parley.test", headers=bearer(key)
                ) as c:
                    r = await c.post(
                        "/v1/admin/users",
                        json={"email": f"via-{peer}@example.com", "password": "long password 123"},
                        headers={"X-Forwarded-For": "198.51.100.7"},
                    )
                    assert r.status_code == 201, r.text
                    record = (await c.get("/v1/admin/audit", params={"limit": 1})).json()
                    assert record["items"][0]["ip"] == expected
    finally:
        await container.aclose()


async def test_evicted_user_clients_are_closed(
    container: Container, settings: Settings, fake_llm: FakeLLM
) -> None:
    """Per-user clients live in a bounded LRU; the one pushed out is closed, not leaked."""
    factory = RecordingFactory()
    service = user_key_service(container, settings, fake_llm, factory)
    service._clients = type(service._clients)(maxsize=2, on_evict=service._close_later)  # type: ignore[call-arg]
    actors = [(await member(container, f"lru{i}@example.com"))[2] for i in range(3)]
    try:
        for i, actor in enumerate(actors):
            await service.put(
                actor=actor, provider="openai", api_key=f"sk-test-LRU{i}-0123456789abcd"
            )
            await service.llm_for(actor)
        await asyncio.sleep(0)  # let the close task run
        await asyncio.gather(*service._closing)
        assert [c.closed for c in factory.clients] == [True, False, False]
    finally:
        await service.aclose()
    assert all(c.closed for c in factory.clients)
