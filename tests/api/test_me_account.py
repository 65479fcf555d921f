"""``PATCH /v1/me`` (your own email and password) and the public ``GET /v1/auth/setup``.

Status choices, as documented on the route: ``current_password`` missing → 422
``invalid_input`` (the request is incomplete); wrong → 403 ``forbidden`` (the bearer
credential is fine, so not 401, which clients treat as "sign in again") and counted toward
the login lockout (429 ``account_locked``); email taken → 409; password shorter than
``security.password_min_chars`` → 422; unknown fields such as ``role`` → 422.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from parley.api.app import create_app
from parley.container import Container
from parley.db.base import utcnow
from parley.domain.auth import SYSTEM
from parley.errors import NotFound
from parley.services.auth import BOOTSTRAP_EMAIL
from parley.settings import Settings
from tests.conftest import bearer, make_user

MIN_CHARS = 16  # set below; not the default, so the rule provably comes from the settings
PASSWORD = "the first password, long enough"
NEW_PASSWORD = "the second password, long enough"
PROBLEM_JSON = "application/problem+json"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The shared settings with a non-default minimum password length."""
    security = settings.security.model_copy(update={"password_min_chars": MIN_CHARS})
    return settings.model_copy(update={"security": security})


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


async def login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/v1/auth/login", json={"email": email, "password": password})


async def tokens(client: httpx.AsyncClient, email: str, password: str) -> dict[str, Any]:
    response = await login(client, email, password)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def setup_state(client: httpx.AsyncClient) -> Any:
    response = await client.get("/v1/auth/setup")
    assert response.status_code == 200, response.text
    return response.json()


# first run -------------------------------------------------------------------------------------
async def test_first_run_the_bootstrap_key_sets_a_real_email_and_password(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    # Before anyone exists, and after bootstrap: only a key gets in. Nothing else is said.
    assert await setup_state(app_client) == {"needs_setup": True}
    key = await container.auth.bootstrap()
    assert key is not None
    assert await setup_state(app_client) == {"needs_setup": True}

    h = bearer(key)
    assert (await app_client.get("/v1/me", headers=h)).json()["email"] == BOOTSTRAP_EMAIL  # cached
    response = await app_client.patch(
        "/v1/me", json={"email": " Owner@Example.com ", "password": PASSWORD}, headers=h
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["email"] == "owner@example.com"
    assert body["role"] == "admin" and body["auth"] == "api_key"
    # The key's cached principal was dropped: it shows the new email at once.
    assert (await app_client.get("/v1/me", headers=h)).json()["email"] == "owner@example.com"

    assert await setup_state(app_client) == {"needs_setup": False}
    pair = await tokens(app_client, "owner@example.com", PASSWORD)
    me = await app_client.get("/v1/me", headers=bearer(pair["access_token"]))
    assert me.json()["role"] == "admin"
    problem(await login(app_client, BOOTSTRAP_EMAIL, PASSWORD), 401, "unauthenticated")

    # The key still works until revoked; from then on, a change needs the password.
    problem(
        await app_client.patch("/v1/me", json={"password": NEW_PASSWORD}, headers=h),
        422,
        "invalid_input",
    )


async def test_setup_is_over_once_any_account_has_a_password(
    container: Container, app_client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Passwordless accounts (keys only) keep the installation in setup ...
    await make_user(container, "keys-only@example.com")
    assert await setup_state(app_client) == {"needs_setup": True}
    # ... a password anywhere ends it, and from then on the answer costs no query.
    await container.accounts.create(email="m@example.com", password=PASSWORD)
    assert await setup_state(app_client) == {"needs_setup": False}
    opened: list[object] = []
    uow = container.auth._uow

    def counting(*args: Any, **kwargs: Any) -> Any:
        opened.append(args)
        return uow(*args, **kwargs)

    monkeypatch.setattr(container.auth, "_uow", counting)
    for _ in range(3):
        assert await setup_state(app_client) == {"needs_setup": False}
    assert opened == []


async def test_a_passwordless_account_needs_its_full_permanent_key_to_set_a_password(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    user_id, full = await make_user(container, "keys@example.com")
    chat = await container.auth.create_key(actor=SYSTEM, user_id=user_id, name="c", scopes=["chat"])
    expiring = await container.auth.create_key(
        actor=SYSTEM, user_id=user_id, name="e", expires_at=utcnow() + timedelta(days=1)
    )
    # A narrower or expiring key must not turn into a full, permanent password login.
    for secret in (chat.secret, expiring.secret):
        refused = await app_client.patch(
            "/v1/me", json={"password": PASSWORD}, headers=bearer(secret)
        )
        problem(refused, 403, "forbidden")
    problem(await login(app_client, "keys@example.com", PASSWORD), 401, "unauthenticated")
    ok = await app_client.patch("/v1/me", json={"password": PASSWORD}, headers=bearer(full))
    assert ok.status_code == 200, ok.text
    await tokens(app_client, "keys@example.com", PASSWORD)


# with a password -------------------------------------------------------------------------------
async def test_changing_needs_the_current_password(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    _, key = await make_user(container, "ann@example.com", password=PASSWORD)
    pair = await tokens(app_client, "ann@example.com", PASSWORD)
    for credential in (key, pair["access_token"]):  # a stolen token or key alone is not enough
        h = bearer(credential)
        for change in ({"password": NEW_PASSWORD}, {"email": "thief@example.com"}):
            missing = await app_client.patch("/v1/me", json=change, headers=h)
            assert problem(missing, 422, "invalid_input")["field"] == "current_password"
            wrong = await app_client.patch(
                "/v1/me", json=change | {"current_password": "a wrong password!"}, headers=h
            )
            assert problem(wrong, 403, "forbidden")["field"] == "current_password"
    # The caller stays signed in after those refusals (403, not 401).
    assert (await app_client.get("/v1/me", headers=bearer(pair["access_token"]))).status_code == 200
    await tokens(app_client, "ann@example.com", PASSWORD)
    with pytest.raises(NotFound):
        await container.accounts.by_email("thief@example.com")


async def test_wrong_current_passwords_count_toward_the_login_lockout(
    container: Container, app_client: httpx.AsyncClient, settings: Settings
) -> None:
    _, key = await make_user(container, "bob@example.com", password=PASSWORD)
    body = {"password": NEW_PASSWORD, "current_password": "not the password"}
    for _ in range(settings.security.lockout_attempts - 1):
        problem(await app_client.patch("/v1/me", json=body, headers=bearer(key)), 403, "forbidden")
    locked = await app_client.patch("/v1/me", json=body, headers=bearer(key))
    problem(locked, 429, "account_locked")
    assert int(locked.headers["retry-after"]) > 0
    problem(await login(app_client, "bob@example.com", PASSWORD), 429, "account_locked")


async def test_a_new_password_ends_the_other_logins_but_not_this_one(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    _, key = await make_user(container, "cy@example.com", password=PASSWORD)
    mine = await tokens(app_client, "cy@example.com", PASSWORD)
    other = await tokens(app_client, "cy@example.com", PASSWORD)
    # Both logins are verified (and cached) before the change.
    for pair in (mine, other):
        assert (await app_client.get("/v1/me", headers=bearer(pair["access_token"]))).is_success
    changed = await app_client.patch(
        "/v1/me",
        json={"password": NEW_PASSWORD, "current_password": PASSWORD},
        headers=bearer(mine["access_token"]),
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["auth"] == "token"

    ended = await app_client.get("/v1/me", headers=bearer(other["access_token"]))
    problem(ended, 401, "unauthenticated")
    again = await app_client.post(
        "/v1/auth/refresh", json={"refresh_token": other["refresh_token"]}
    )
    problem(again, 401, "unauthenticated")
    # The login that made the change goes on, refresh included.
    assert (await app_client.get("/v1/me", headers=bearer(mine["access_token"]))).is_success
    renewed = await app_client.post(
        "/v1/auth/refresh", json={"refresh_token": mine["refresh_token"]}
    )
    assert renewed.status_code == 200, renewed.text
    # API keys are separate credentials (revoked under /v1/me/keys), the old password is gone.
    assert (await app_client.get("/v1/me", headers=bearer(key))).is_success
    problem(await login(app_client, "cy@example.com", PASSWORD), 401, "unauthenticated")
    await tokens(app_client, "cy@example.com", NEW_PASSWORD)


async def test_an_email_change_keeps_the_password_and_signs_in_under_the_new_email(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    _, key = await make_user(container, "dee@example.com", password=PASSWORD)
    pair = await tokens(app_client, "dee@example.com", PASSWORD)
    response = await app_client.patch(
        "/v1/me",
        json={"email": "dee@example.org", "current_password": PASSWORD},
        headers=bearer(key),
    )
    assert response.status_code == 200, response.text
    # No new password: the other logins go on.
    me = await app_client.get("/v1/me", headers=bearer(pair["access_token"]))
    assert me.json()["email"] == "dee@example.org"
    await tokens(app_client, "dee@example.org", PASSWORD)
    problem(await login(app_client, "dee@example.com", PASSWORD), 401, "unauthenticated")


# input rules -----------------------------------------------------------------------------------
async def test_duplicate_email_is_409(container: Container, app_client: httpx.AsyncClient) -> None:
    await make_user(container, "taken@example.com")
    _, key = await make_user(container, "eve@example.com", password=PASSWORD)
    for email in ("taken@example.com", " TAKEN@example.com"):
        response = await app_client.patch(
            "/v1/me", json={"email": email, "current_password": PASSWORD}, headers=bearer(key)
        )
        assert problem(response, 409, "conflict")["field"] == "email"
    # Re-stating one's own email is no conflict.
    same = await app_client.patch(
        "/v1/me",
        json={"email": "Eve@example.com", "current_password": PASSWORD},
        headers=bearer(key),
    )
    assert same.status_code == 200, same.text


async def test_password_and_email_rules_are_422(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    _, key = await make_user(container, "fay@example.com", password=PASSWORD)
    h = bearer(key)
    short = "x" * (MIN_CHARS - 1)
    response = await app_client.patch(
        "/v1/me", json={"password": short, "current_password": PASSWORD}, headers=h
    )
    body = problem(response, 422, "invalid_input")
    assert body["field"] == "password" and str(MIN_CHARS) in body["detail"]
    for change in (
        {"email": "not an email"},
        {},  # nothing to change
        {"password": ""},
        {"password": "y" * 1025},
    ):
        response = await app_client.patch(
            "/v1/me", json=change | {"current_password": PASSWORD}, headers=h
        )
        problem(response, 422, "invalid_input")
    exact = await app_client.patch(
        "/v1/me", json={"password": "z" * MIN_CHARS, "current_password": PASSWORD}, headers=h
    )
    assert exact.status_code == 200, exact.text


async def test_a_member_cannot_change_their_role_through_it(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    user_id, key = await make_user(container, "gus@example.com", password=PASSWORD)
    for extra in ({"role": "admin"}, {"disabled": False}, {"scopes": ["admin"]}):
        response = await app_client.patch(
            "/v1/me", json={"current_password": PASSWORD} | extra, headers=bearer(key)
        )
        problem(response, 422, "invalid_input")
    assert (await container.accounts.get(user_id)).role == "member"
    me = (await app_client.get("/v1/me", headers=bearer(key))).json()
    assert me["role"] == "member" and "admin" not in me["scopes"]


async def test_the_change_is_audited_without_any_password(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    user_id, key = await make_user(container, "hal@example.com", password=PASSWORD)
    _, admin_key = await make_user(container, "root@example.com", role="admin")
    response = await app_client.patch(
        "/v1/me",
        json={"email": "hal@example.org", "password": NEW_PASSWORD, "current_password": PASSWORD},
        headers=bearer(key),
    )
    assert response.status_code == 200, response.text
    refused = await app_client.patch(
        "/v1/me",
        json={"password": PASSWORD, "current_password": "wrong password"},
        headers=bearer(key),
    )
    problem(refused, 403, "forbidden")
    listed = await app_client.get(
        "/v1/admin/audit", params={"action": "user.*"}, headers=bearer(admin_key)
    )
    assert listed.status_code == 200, listed.text
    (item,) = listed.json()["items"]  # a refused change is not an action taken
    assert item["action"] == "user.update_own"
    assert item["actor_id"] == user_id and item["target_id"] == user_id
    assert item["target_type"] == "user" and item["actor_key_id"]
    assert item["detail"] == {"email": "hal@example.org", "password": "changed"}
    raw = json.dumps(item)
    assert PASSWORD not in raw and NEW_PASSWORD not in raw


async def test_dev_mode_has_no_account_to_change(settings: Settings) -> None:
    dev = settings.model_copy(update={"auth": "off"})
    async with LifespanManager(create_app(dev)) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://parley.test") as c:
            response = await c.patch("/v1/me", json={"password": PASSWORD})
            problem(response, 422, "invalid_input")
