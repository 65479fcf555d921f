"""Login, refresh rotation and reuse detection, logout, API keys, account changes, bootstrap,
the signing-secret rules and local dev mode, end to end over HTTP on both backends."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from parley.api.app import create_app
from parley.container import Container
from parley.db.base import utcnow
from parley.db.models import ApiKeyRow
from parley.domain.auth import SYSTEM, Principal
from parley.errors import ConfigurationError
from parley.settings import Settings
from tests.conftest import bearer, make_user

PASSWORD = "a long enough password"
PROBLEM_JSON = "application/problem+json"
_FAKES: dict[str, Any] = {
    "embeddings": {"provider": "fake", "dimension": 64},
    "llm": {"provider": "fake"},
}


async def login(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> dict[str, Any]:
    """A successful login's body."""
    response = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def status_of(client: httpx.AsyncClient, credential: str, path: str = "/v1/me") -> int:
    return (await client.get(path, headers=bearer(credential))).status_code


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


async def refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/v1/auth/refresh", json={"refresh_token": token})


# login ---------------------------------------------------------------------------------------
async def test_login_returns_a_token_pair_that_works(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    user = await container.accounts.create(email="Ann@Example.com", password=PASSWORD)
    pair = await login(app_client, "  ann@example.COM ")  # emails compare case-insensitively
    assert pair["token_type"] == "bearer"
    assert pair["access_token"].count(".") == 2
    assert pair["refresh_token"].startswith("prt_")
    assert pair["expires_in"] > 0
    me = await app_client.get("/v1/me", headers=bearer(pair["access_token"]))
    assert me.status_code == 200, me.text
    assert me.json() | {"scopes": None} == {
        "id": user.id,
        "email": "ann@example.com",
        "role": "member",
        "scopes": None,
        "auth": "token",
        "key_id": None,
        "provider_keys": [],
    }
    assert sorted(me.json()["scopes"]) == ["chat", "ingest"]


async def test_wrong_password_and_unknown_email_look_the_same(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    await container.accounts.create(email="bob@example.com", password=PASSWORD)
    wrong = await app_client.post(
        "/v1/auth/login", json={"email": "bob@example.com", "password": "not the password"}
    )
    unknown = await app_client.post(
        "/v1/auth/login", json={"email": "nobody@example.com", "password": "not the password"}
    )
    bodies = []
    for response in (wrong, unknown):
        body = assert_problem(response, 401, "unauthenticated")
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert "access_token" not in body
        body.pop("request_id", None)
        bodies.append(body)
    assert bodies[0] == bodies[1]  # nothing tells an attacker which emails exist


async def test_a_user_without_a_password_cannot_log_in(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    await make_user(container, "keyonly@example.com")  # password=None
    response = await app_client.post(
        "/v1/auth/login", json={"email": "keyonly@example.com", "password": "anything at all"}
    )
    assert_problem(response, 401, "unauthenticated")


# refresh rotation and reuse detection ------------------------------------------------------
async def test_refresh_rotates_and_the_old_token_is_spent(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    await container.accounts.create(email="c@example.com", password=PASSWORD)
    first = await login(app_client, "c@example.com")
    rotated = await refresh(app_client, first["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()
    assert second["token_type"] == "bearer"
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert await status_of(app_client, second["access_token"]) == 200
    # The new refresh token rotates again; the chain goes on.
    third = await refresh(app_client, second["refresh_token"])
    assert third.status_code == 200, third.text


async def test_reusing_a_spent_refresh_token_revokes_the_whole_family(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    await container.accounts.create(email="d@example.com", password=PASSWORD)
    first = await login(app_client, "d@example.com")
    second = (await refresh(app_client, first["refresh_token"])).json()
    other_login = await login(app_client, "d@example.com")
    # Every access token of the family was verified (and cached) just before the theft.
    for token in (first["access_token"], second["access_token"], other_login["access_token"]):
        assert await status_of(app_client, token) == 200

    replay = await refresh(app_client, first["refresh_token"])
    assert_problem(replay, 401, "unauthenticated")

    # Thief and user are both signed out of that login, at once...
    assert_problem(await refresh(app_client, second["refresh_token"]), 401, "unauthenticated")
    for token in (first["access_token"], second["access_token"]):
        assert await status_of(app_client, token) == 401
    # ...but the user's other login is a different family and keeps working.
    assert await status_of(app_client, other_login["access_token"]) == 200
    assert (await refresh(app_client, other_login["refresh_token"])).status_code == 200
    # And signing in again works.
    fresh = await login(app_client, "d@example.com")
    assert await status_of(app_client, fresh["access_token"]) == 200


# logout --------------------------------------------------------------------------------------
async def test_logout_ends_that_login_only(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    await container.accounts.create(email="e@example.com", password=PASSWORD)
    ending = await login(app_client, "e@example.com")
    staying = await login(app_client, "e@example.com")
    assert await status_of(app_client, ending["access_token"]) == 200

    out = await app_client.post("/v1/auth/logout", headers=bearer(ending["access_token"]))
    assert out.status_code == 204, out.text

    assert await status_of(app_client, ending["access_token"]) == 401
    assert_problem(await refresh(app_client, ending["refresh_token"]), 401, "unauthenticated")
    assert await status_of(app_client, staying["access_token"]) == 200
    assert (await refresh(app_client, staying["refresh_token"])).status_code == 200


async def test_logout_with_an_api_key_needs_the_refresh_token(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    _, key = await make_user(container, "f@example.com", password=PASSWORD)
    pair = await login(app_client, "f@example.com")
    refused = await app_client.post("/v1/auth/logout", headers=bearer(key))
    assert_problem(refused, 422, "invalid_input")
    assert await status_of(app_client, pair["access_token"]) == 200
    out = await app_client.post(
        "/v1/auth/logout", headers=bearer(key), json={"refresh_token": pair["refresh_token"]}
    )
    assert out.status_code == 204, out.text
    assert await status_of(app_client, pair["access_token"]) == 401
    assert await status_of(app_client, key) == 200  # the key itself is not affected


# API keys ------------------------------------------------------------------------------------
async def test_a_new_key_is_shown_once_works_and_is_revoked_at_once(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    await container.accounts.create(email="g@example.com", password=PASSWORD)
    token = (await login(app_client, "g@example.com"))["access_token"]
    created = await app_client.post(
        "/v1/me/keys", json={"name": "laptop", "scopes": ["chat"]}, headers=bearer(token)
    )
    assert created.status_code == 201, created.text
    new = created.json()
    secret = new["key"]
    assert secret.startswith(f"pk_{new['prefix']}_")
    assert new["scopes"] == ["chat"] and new["revoked_at"] is None

    listed = await app_client.get("/v1/me/keys", headers=bearer(token))
    assert listed.status_code == 200
    (item,) = listed.json()["items"]
    assert item["id"] == new["id"] and "key" not in item and "key_hash" not in item
    for leak in (secret, secret.split("_", 2)[2], hashlib.sha256(secret.encode()).hexdigest()):
        assert leak not in listed.text

    me = (await app_client.get("/v1/me", headers=bearer(secret))).json()
    assert me["auth"] == "api_key" and me["key_id"] == new["id"] and me["scopes"] == ["chat"]

    deleted = await app_client.delete(f"/v1/me/keys/{new['id']}", headers=bearer(token))
    assert deleted.status_code == 204, deleted.text
    # It was verified (and cached) a moment ago; revocation still applies immediately.
    refused = await app_client.get("/v1/me", headers=bearer(secret))
    assert_problem(refused, 401, "unauthenticated")
    (item,) = (await app_client.get("/v1/me/keys", headers=bearer(token))).json()["items"]
    assert item["revoked_at"] is not None


async def test_nobody_revokes_someone_elses_key_through_me(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    _, a_key = await make_user(container, "a@example.com")
    _, b_key = await make_user(container, "b@example.com")
    _, admin_key = await make_user(container, "admin@example.com", role="admin")
    (a_row,) = await container.auth.keys(actor=await container.auth.authenticate(a_key))
    for other in (b_key, admin_key):
        response = await app_client.delete(f"/v1/me/keys/{a_row.id}", headers=bearer(other))
        assert_problem(response, 404, "not_found")
        assert await status_of(app_client, a_key) == 200
    # Admins revoke other users' keys through the (audited) admin route.
    revoked = await app_client.delete(f"/v1/admin/keys/{a_row.id}", headers=bearer(admin_key))
    assert revoked.status_code == 204, revoked.text
    assert await status_of(app_client, a_key) == 401
    audit = await app_client.get(
        "/v1/admin/audit", params={"action": "key.revoke"}, headers=bearer(admin_key)
    )
    assert [r["target_id"] for r in audit.json()["items"]] == [a_row.id]


async def test_an_expired_key_is_refused(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    user_id, _ = await make_user(container, "h@example.com")
    later = utcnow() + timedelta(days=1)
    new = await container.auth.create_key(
        actor=SYSTEM, user_id=user_id, name="short-lived", expires_at=later
    )
    assert await status_of(app_client, new.secret) == 200
    async with container.uow(write=True) as tx:
        row = await tx.session.get(ApiKeyRow, new.row.id)
        assert row is not None
        row.expires_at = utcnow() - timedelta(seconds=1)
        await tx.commit()
    container.auth.forget(key_id=new.row.id)  # what another instance sees after the TTL
    assert_problem(
        await app_client.get("/v1/me", headers=bearer(new.secret)), 401, "unauthenticated"
    )


async def test_past_expiry_is_refused_at_creation(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    _, key = await make_user(container, "i@example.com")
    past = (utcnow() - timedelta(minutes=1)).isoformat()
    response = await app_client.post(
        "/v1/me/keys", json={"name": "old", "expires_at": past}, headers=bearer(key)
    )
    assert_problem(response, 422, "invalid_input")
    ok = await app_client.post(
        "/v1/me/keys", json={"name": "week", "expires_in_days": 7}, headers=bearer(key)
    )
    assert ok.status_code == 201 and ok.json()["expires_at"] is not None


async def test_a_key_cannot_exceed_its_role_or_its_creators_scopes(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    user_id, key = await make_user(container, "j@example.com")
    too_much = await app_client.post(
        "/v1/me/keys", json={"name": "x", "scopes": ["admin"]}, headers=bearer(key)
    )
    assert_problem(too_much, 403, "forbidden")
    chat = await container.auth.create_key(
        actor=SYSTEM, user_id=user_id, name="chat", scopes=["chat"]
    )
    wider = await app_client.post(
        "/v1/me/keys", json={"name": "y", "scopes": ["ingest"]}, headers=bearer(chat.secret)
    )
    assert_problem(wider, 403, "forbidden")
    # Without explicit scopes, a key made by a key gets at most that key's scopes.
    default = await app_client.post("/v1/me/keys", json={"name": "z"}, headers=bearer(chat.secret))
    assert default.status_code == 201, default.text
    assert default.json()["scopes"] == ["chat"]
    # A key of the user's full role (or a token) gets everything the role allows.
    full = await app_client.post("/v1/me/keys", json={"name": "w"}, headers=bearer(key))
    assert sorted(full.json()["scopes"]) == ["chat", "ingest"]


async def test_last_used_is_recorded_when_flushed(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    user_id, key = await make_user(container, "k@example.com")
    owner = Principal(user_id=user_id, role="member", scopes=frozenset())
    (row,) = await container.auth.keys(actor=owner)
    assert row.last_used_at is None
    assert await status_of(app_client, key) == 200
    assert await status_of(app_client, key) == 200  # the cached path counts too
    before = utcnow()
    await container.auth.flush_last_used()
    (row,) = await container.auth.keys(actor=owner)
    assert row.last_used_at is not None
    used = row.last_used_at
    used = used if used.tzinfo is not None else used.replace(tzinfo=UTC)  # SQLite: naive UTC
    assert before - timedelta(seconds=30) <= used <= before
    (item,) = (await app_client.get("/v1/me/keys", headers=bearer(key))).json()["items"]
    assert item["last_used_at"] is not None


# account changes by an admin ---------------------------------------------------------------
async def test_disabling_a_user_ends_their_keys_and_tokens_at_once(
    container: Container, client: httpx.AsyncClient
) -> None:
    user_id, key = await make_user(container, "m@example.com", password=PASSWORD)
    pair = await login(client, "m@example.com")
    assert await status_of(client, key) == 200
    assert await status_of(client, pair["access_token"]) == 200

    disabled = await client.patch(f"/v1/admin/users/{user_id}", json={"disabled": True})
    assert disabled.status_code == 200 and disabled.json()["disabled"] is True

    assert await status_of(client, key) == 401
    assert await status_of(client, pair["access_token"]) == 401
    assert_problem(await refresh(client, pair["refresh_token"]), 401, "unauthenticated")
    login_again = await client.post(
        "/v1/auth/login", json={"email": "m@example.com", "password": PASSWORD}
    )
    assert_problem(login_again, 401, "unauthenticated")

    # Re-enabling gives the (unrevoked) key back; the ended logins stay ended.
    enabled = await client.patch(f"/v1/admin/users/{user_id}", json={"disabled": False})
    assert enabled.status_code == 200
    assert await status_of(client, key) == 200
    assert await status_of(client, pair["access_token"]) == 401


async def test_a_demoted_admin_loses_admin_routes_at_once(
    container: Container, client: httpx.AsyncClient
) -> None:
    user_id, key = await make_user(container, "n@example.com", role="admin", password=PASSWORD)
    token = (await login(client, "n@example.com"))["access_token"]
    for credential in (key, token):
        assert await status_of(client, credential, "/v1/admin/users") == 200

    demoted = await client.patch(f"/v1/admin/users/{user_id}", json={"role": "member"})
    assert demoted.status_code == 200 and demoted.json()["role"] == "member"

    # The key keeps working, as a member's; the login ends (as any role change ends them).
    assert_problem(await client.get("/v1/admin/users", headers=bearer(key)), 403, "forbidden")
    me = (await client.get("/v1/me", headers=bearer(key))).json()
    assert me["role"] == "member" and "admin" not in me["scopes"]
    ended = await client.get("/v1/admin/users", headers=bearer(token))
    assert_problem(ended, 401, "unauthenticated")


async def test_the_last_admin_stays_an_admin(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    admin_id, admin_key = await make_user(container, "root@example.com", role="admin")
    h = bearer(admin_key)
    for change in ({"role": "member"}, {"disabled": True}):
        response = await app_client.patch(f"/v1/admin/users/{admin_id}", json=change, headers=h)
        assert_problem(response, 409, "conflict")
    assert_problem(
        await app_client.delete(f"/v1/admin/users/{admin_id}", headers=h), 409, "conflict"
    )
    assert await status_of(app_client, admin_key, "/v1/admin/users") == 200

    # With a second admin, the first may step down.
    second_id, second_key = await make_user(container, "second@example.com", role="admin")
    stepped = await app_client.patch(
        f"/v1/admin/users/{admin_id}", json={"role": "member"}, headers=h
    )
    assert stepped.status_code == 200, stepped.text
    # Now the second admin is the last one, with the same protection.
    response = await app_client.delete(f"/v1/admin/users/{second_id}", headers=bearer(second_key))
    assert_problem(response, 409, "conflict")


async def test_a_user_who_owns_collections_cannot_be_deleted(
    container: Container, client: httpx.AsyncClient
) -> None:
    user_id, key = await make_user(container, "o@example.com")
    created = await client.post("/v1/collections", json={"name": "mine"}, headers=bearer(key))
    assert created.status_code == 201, created.text
    assert_problem(await client.delete(f"/v1/admin/users/{user_id}"), 409, "conflict")
    assert await status_of(client, key) == 200

    gone = await client.delete(f"/v1/collections/{created.json()['id']}", headers=bearer(key))
    assert gone.status_code == 204, gone.text
    deleted = await client.delete(f"/v1/admin/users/{user_id}")
    assert deleted.status_code == 204, deleted.text
    assert await status_of(client, key) == 401
    assert_problem(await client.get(f"/v1/admin/users/{user_id}"), 404, "not_found")


# first run -----------------------------------------------------------------------------------
async def test_bootstrap_prints_one_admin_key_once(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    key = await container.auth.bootstrap()
    assert key is not None and key.startswith("pk_")
    me = await app_client.get("/v1/me", headers=bearer(key))
    assert me.status_code == 200, me.text
    assert me.json()["role"] == "admin" and sorted(me.json()["scopes"]) == [
        "admin",
        "chat",
        "ingest",
    ]
    assert await status_of(app_client, key, "/v1/admin/users") == 200
    assert await container.auth.bootstrap() is None


async def test_no_bootstrap_once_a_user_exists(container: Container) -> None:
    await container.accounts.create(email="p@example.com", password=PASSWORD)
    assert await container.auth.bootstrap() is None


def plain_settings(data_dir: Path, **values: Any) -> Settings:
    """Settings from ``values`` alone (no .env file), in a scratch data directory."""
    return Settings(_env_file=None, data_dir=data_dir, **values)  # type: ignore[call-arg]


# secrets and dev mode ------------------------------------------------------------------------
def test_a_short_jwt_secret_refuses_to_start(tmp_path: Path) -> None:
    for secret in ("short", "x" * 31, "é" * 15):  # bytes count, not characters
        with pytest.raises(ConfigurationError, match="at least 32 bytes"):
            Container.build(plain_settings(tmp_path, jwt_secret=secret))


async def test_a_short_jwt_secret_stops_the_app_at_startup(tmp_path: Path) -> None:
    settings = plain_settings(tmp_path, jwt_secret="short", **_FAKES)
    with pytest.raises(ConfigurationError, match="at least 32 bytes"):
        async with LifespanManager(create_app(settings)):
            pass


async def test_a_32_byte_jwt_secret_is_enough(tmp_path: Path) -> None:
    settings = plain_settings(tmp_path, jwt_secret="é" * 16, **_FAKES)
    built = Container.build(settings)
    await built.aclose()


def test_dev_mode_refuses_a_non_loopback_bind(tmp_path: Path) -> None:
    for host in ("0.0.0.0", "::", "192.168.1.10", "parley.example.com"):
        settings = plain_settings(tmp_path, auth="off", server={"host": host})
        with pytest.raises(ConfigurationError, match="loopback"):
            create_app(settings)
    for host in ("127.0.0.1", "::1", "localhost"):
        settings = plain_settings(tmp_path, auth="off", server={"host": host})
        assert create_app(settings) is not None


@asynccontextmanager
async def dev_mode_client(settings: Settings, client_host: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client of an auth-off app (on the test's backend), calling from ``client_host``."""
    dev = settings.model_copy(update={"auth": "off"})
    app = create_app(dev)
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=(client_host, 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://parley.test") as c:
            yield c


async def test_dev_mode_serves_loopback_clients_as_admin(settings: Settings) -> None:
    async with dev_mode_client(settings, "127.0.0.1") as c:
        me = await c.get("/v1/me")
        assert me.status_code == 200, me.text
        assert me.json()["auth"] == "dev" and me.json()["role"] == "admin"
        assert (await c.get("/v1/admin/users")).status_code == 200
        created = await c.post("/v1/collections", json={"name": "dev"})
        assert created.status_code == 201, created.text


async def test_dev_mode_refuses_remote_clients(settings: Settings) -> None:
    async with dev_mode_client(settings, "203.0.113.9") as c:
        for response in (
            await c.get("/v1/me"),
            await c.get("/v1/admin/users"),
            await c.post("/v1/collections", json={"name": "x"}),
        ):
            assert_problem(response, 403, "forbidden")
        assert (await c.get("/livez")).status_code == 200
