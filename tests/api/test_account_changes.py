"""Account changes end what the README says they end, and a narrowed admin key sees what a
member would.

- ``PATCH /v1/admin/users/{id}`` that changes the role, the password or the disabled state
  ends every login of the user (access and refresh tokens); their API keys keep working
  unless ``"revoke_keys": true`` revokes them too (a reset after a compromise).
- ``PATCH /v1/me`` with a new password ends the user's other logins and leaves API keys be.
- An admin's key without the ``admin`` scope lists only that admin's sessions, and only the
  collection ids it may read, like a member's.
"""

from __future__ import annotations

from typing import Any

import httpx

from parley.container import Container
from tests.conftest import bearer, make_user

PASSWORD = "the first password, long enough"
NEW_PASSWORD = "the second password, long enough"


async def _login(client: httpx.AsyncClient, email: str, password: str) -> dict[str, Any]:
    r = await client.post("/v1/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def _works(client: httpx.AsyncClient, credential: str) -> bool:
    """Whether a bearer credential (key or access token) is accepted."""
    status = (await client.get("/v1/me", headers=bearer(credential))).status_code
    assert status in (200, 401), status
    return status == 200


async def _refreshes(client: httpx.AsyncClient, refresh_token: str) -> bool:
    r = await client.post("/v1/auth/refresh", json={"refresh_token": refresh_token})
    assert r.status_code in (200, 401), r.text
    return r.status_code == 200


async def _patch(client: httpx.AsyncClient, user_id: str, **change: Any) -> dict[str, Any]:
    r = await client.patch(f"/v1/admin/users/{user_id}", json=change)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


async def test_a_role_change_ends_the_users_logins(
    client: httpx.AsyncClient, container: Container
) -> None:
    uid, key = await make_user(container, "ana@example.com", password=PASSWORD)
    pair = await _login(client, "ana@example.com", PASSWORD)
    assert await _works(client, pair["access_token"])

    assert (await _patch(client, uid, role="admin"))["role"] == "admin"

    assert not await _works(client, pair["access_token"])
    assert not await _refreshes(client, pair["refresh_token"])
    # API keys are not logins: the key keeps working, with the new role.
    me = await client.get("/v1/me", headers=bearer(key))
    assert me.status_code == 200 and me.json()["role"] == "admin"
    # Signing in again works and carries the new role.
    fresh = await _login(client, "ana@example.com", PASSWORD)
    me = await client.get("/v1/me", headers=bearer(fresh["access_token"]))
    assert me.json()["role"] == "admin"


async def test_a_patch_that_changes_nothing_ends_nothing(
    client: httpx.AsyncClient, container: Container
) -> None:
    uid, _ = await make_user(container, "ben@example.com", password=PASSWORD)
    pair = await _login(client, "ben@example.com", PASSWORD)
    await _patch(client, uid, role="member", disabled=False)  # as it already is
    assert await _works(client, pair["access_token"])
    assert await _refreshes(client, pair["refresh_token"])


async def test_an_admin_password_reset_ends_logins_and_keeps_keys_unless_asked(
    client: httpx.AsyncClient, container: Container
) -> None:
    uid, key = await make_user(container, "cleo@example.com", password=PASSWORD)
    pair = await _login(client, "cleo@example.com", PASSWORD)

    await _patch(client, uid, password=NEW_PASSWORD)

    assert not await _works(client, pair["access_token"])
    assert not await _refreshes(client, pair["refresh_token"])
    assert await _works(client, key)


async def test_a_reset_with_revoke_keys_leaves_no_old_credential_working(
    client: httpx.AsyncClient, container: Container
) -> None:
    uid, key = await make_user(container, "dan@example.com", password=PASSWORD)
    spare = await container.auth.create_key(
        actor=await container.auth.authenticate(key), name="ci", scopes=["chat"]
    )
    pair = await _login(client, "dan@example.com", PASSWORD)
    assert await _works(client, key) and await _works(client, spare.secret)  # cached now

    await _patch(client, uid, password=NEW_PASSWORD, revoke_keys=True)

    for credential in (key, spare.secret, pair["access_token"]):
        assert not await _works(client, credential)
    assert not await _refreshes(client, pair["refresh_token"])
    new_pair = await _login(client, "dan@example.com", NEW_PASSWORD)
    keys = (await client.get("/v1/me/keys", headers=bearer(new_pair["access_token"]))).json()
    assert keys["items"] and all(k["revoked_at"] is not None for k in keys["items"])
    # The audit record says what happened, never the password.
    record = (await client.get("/v1/admin/audit", params={"target_id": uid})).json()["items"][0]
    assert record["action"] == "user.update"
    assert record["detail"] == {"password": "changed", "revoke_keys": True}


async def test_revoke_keys_alone_ends_keys_and_logins(
    client: httpx.AsyncClient, container: Container
) -> None:
    uid, key = await make_user(container, "eve@example.com", password=PASSWORD)
    pair = await _login(client, "eve@example.com", PASSWORD)
    await _patch(client, uid, revoke_keys=True)
    assert not await _works(client, key)
    assert not await _works(client, pair["access_token"])
    assert await _login(client, "eve@example.com", PASSWORD)  # the password is unchanged


async def test_an_own_password_change_ends_other_logins_and_keeps_keys(
    client: httpx.AsyncClient, container: Container
) -> None:
    _, key = await make_user(container, "fay@example.com", password=PASSWORD)
    mine = await _login(client, "fay@example.com", PASSWORD)
    other = await _login(client, "fay@example.com", PASSWORD)
    r = await client.patch(
        "/v1/me",
        json={"password": NEW_PASSWORD, "current_password": PASSWORD},
        headers=bearer(mine["access_token"]),
    )
    assert r.status_code == 200, r.text
    assert await _works(client, mine["access_token"])
    assert not await _works(client, other["access_token"])
    assert not await _refreshes(client, other["refresh_token"])
    assert await _works(client, key)


async def test_a_narrowed_admin_key_sees_sessions_like_a_member(
    client: httpx.AsyncClient, container: Container
) -> None:
    admin_key = client.headers["Authorization"].removeprefix("Bearer ")
    _, member_key = await make_user(container, "gus@example.com")
    theirs = await client.post(
        "/v1/collections", json={"name": "gus-kb"}, headers=bearer(member_key)
    )
    ours = await client.post("/v1/collections", json={"name": "admin-kb"})
    their_cid, our_cid = theirs.json()["id"], ours.json()["id"]
    their_session = await client.post(
        "/v1/sessions", json={"collection_ids": [their_cid]}, headers=bearer(member_key)
    )
    # With the admin scope the admin may open a session over anyone's collections.
    mixed = await client.post("/v1/sessions", json={"collection_ids": [our_cid, their_cid]})
    assert mixed.status_code == 201, mixed.text
    assert mixed.json()["collection_ids"] == [our_cid, their_cid]
    narrowed = await client.post("/v1/me/keys", json={"name": "ci", "scopes": ["chat", "ingest"]})
    ci = bearer(narrowed.json()["key"])

    listed = (await client.get("/v1/sessions", headers=ci)).json()["items"]
    assert [(s["id"], s["collection_ids"]) for s in listed] == [(mixed.json()["id"], [our_cid])]
    one = await client.get(f"/v1/sessions/{mixed.json()['id']}", headers=ci)
    assert one.json()["collection_ids"] == [our_cid]
    hidden = await client.get(f"/v1/sessions/{their_session.json()['id']}", headers=ci)
    assert hidden.status_code == 404
    # The full admin key still sees everything, the member its own.
    everything = (await client.get("/v1/sessions", headers=bearer(admin_key))).json()["items"]
    assert {s["id"] for s in everything} >= {mixed.json()["id"], their_session.json()["id"]}
    assert (await client.get(f"/v1/sessions/{mixed.json()['id']}")).json()["collection_ids"] == [
        our_cid,
        their_cid,
    ]
    own = (await client.get("/v1/sessions", headers=bearer(member_key))).json()["items"]
    assert [(s["id"], s["collection_ids"]) for s in own] == [
        (their_session.json()["id"], [their_cid])
    ]
