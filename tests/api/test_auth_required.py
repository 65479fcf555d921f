"""Every non-public route refuses bad credentials; roles and key scopes are enforced.

The list of routes is generated from the app's route table (nested routers included), so a
route added without an ``*Actor`` dependency fails here instead of shipping unprotected.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from jwt.warnings import InsecureKeyLengthWarning
from starlette.routing import BaseRoute, Mount

from parley.api.app import create_app
from parley.api.security import PUBLIC_PATHS, AuthenticationMiddleware, is_public, route_path
from parley.container import Container
from parley.domain.auth import SYSTEM
from parley.settings import Settings
from tests.conftest import TEST_JWT_SECRET, TEST_SECURITY, bearer, make_user

PROBLEM_JSON = "application/problem+json"
_PARAM = re.compile(r"\{[^}]+\}")
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


# the route table ---------------------------------------------------------------------------
def _walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path template) for every HTTP endpoint, nested routers and mounts included."""
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if contexts is not None:  # FastAPI's included router: one context per endpoint
            for ctx in contexts():
                for method in ctx.methods or ():
                    yield method, prefix + ctx.path
        elif isinstance(route, Mount):
            if not route.routes:  # a mounted ASGI app (static files...): no table to check
                raise AssertionError(f"mounted app at {route.path!r}: decide how to protect it")
            yield from _walk(list(route.routes), prefix + route.path)
        elif getattr(route, "methods", None) is not None:
            for method in route.methods:  # type: ignore[attr-defined]
                yield method, prefix + route.path  # type: ignore[attr-defined]
        else:  # a websocket route or something new: decide how to protect it, then list it
            raise AssertionError(f"unhandled route type {type(route).__name__}: {route!r}")


def route_table(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path template) of the app except HEAD (it mirrors GET)."""
    return sorted({(m, p) for m, p in _walk(list(app.routes)) if m != "HEAD"})


def _table_app() -> FastAPI:
    # Only the route table is needed: nothing is started, no container is built.
    return create_app(Settings(_env_file=None, **TEST_SECURITY))  # type: ignore[call-arg, arg-type]


ALL_ROUTES = route_table(_table_app())
PROTECTED = [(m, p) for m, p in ALL_ROUTES if not is_public(p)]
PUBLIC = [(m, p) for m, p in ALL_ROUTES if is_public(p)]
ADMIN_ROUTES = [(m, p) for m, p in PROTECTED if p.startswith("/v1/admin/")]


def fill(template: str) -> str:
    """A concrete path: every ``{param}`` becomes a random (non-existent) hex id."""
    return _PARAM.sub(lambda _m: uuid.uuid4().hex, template)


async def call(
    client: httpx.AsyncClient, method: str, template: str, headers: dict[str, str] | None = None
) -> httpx.Response:
    """One request to a route; write methods carry an empty JSON object as body."""
    extra: dict[str, Any] = {"json": {}} if method in _BODY_METHODS else {}
    return await client.request(method, fill(template), headers=headers or {}, **extra)


def _problem(response: httpx.Response) -> dict[str, Any]:
    assert response.headers.get("content-type", "").startswith(PROBLEM_JSON), response.text
    body: dict[str, Any] = response.json()
    return body


def unauthenticated_problems(response: httpx.Response) -> list[str]:
    """What is wrong with a response that should be a 401 (empty = nothing)."""
    issues = []
    if response.status_code != 401:
        issues.append(f"status {response.status_code}: {response.text[:200]}")
        return issues
    if not response.headers.get("content-type", "").startswith(PROBLEM_JSON):
        issues.append(f"content-type {response.headers.get('content-type')!r}")
    elif response.json().get("code") != "unauthenticated":
        issues.append(f"code {response.json().get('code')!r}")
    if not response.headers.get("www-authenticate", "").startswith("Bearer"):
        issues.append(f"WWW-Authenticate {response.headers.get('www-authenticate')!r}")
    return issues


# the generated list itself -----------------------------------------------------------------
def test_the_generated_route_list_covers_the_api() -> None:
    assert len(PROTECTED) >= 30, PROTECTED
    for expected in (
        ("POST", "/v1/sessions/{session_id}/messages"),
        ("GET", "/v1/admin/audit"),
        ("POST", "/v1/collections/{collection_id}/documents"),
        ("POST", "/v1/collections/{collection_id}/grants"),
        ("DELETE", "/v1/me/keys/{key_id}"),
        ("PATCH", "/v1/admin/users/{user_id}"),
        ("POST", "/v1/auth/logout"),
        ("GET", "/v1/me"),
        ("PATCH", "/v1/me"),
    ):
        assert expected in PROTECTED
    assert ("POST", "/v1/auth/login") in PUBLIC
    assert ("GET", "/v1/auth/setup") in PUBLIC  # the first-run signal: one boolean
    assert ("HEAD", "/livez") not in ALL_ROUTES
    assert len(ADMIN_ROUTES) >= 6, ADMIN_ROUTES


def test_every_public_path_exists() -> None:
    # A stale entry would silently make a future route at that path public.
    existing = {p for _m, p in ALL_ROUTES}
    assert existing >= PUBLIC_PATHS, PUBLIC_PATHS - existing


def test_fill_replaces_every_path_parameter() -> None:
    path = fill("/v1/collections/{collection_id}/grants/{user_id}")
    assert "{" not in path
    _, _, collection_id, _, user_id = path.strip("/").split("/")
    assert re.fullmatch(r"[0-9a-f]{32}", collection_id)
    assert collection_id != user_id


# credentials that must all be refused ------------------------------------------------------
def _b64(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _encode(claims: dict[str, Any], secret: str = TEST_JWT_SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


async def _real_claims(container: Container) -> dict[str, Any]:
    """The claims of a genuine access token of a real, signed-in admin."""
    await container.accounts.create(
        email="victim@example.com", password="correct horse battery", role="admin"
    )
    pair = await container.auth.login(email="victim@example.com", password="correct horse battery")
    claims: dict[str, Any] = jwt.decode(pair.access_token, options={"verify_signature": False})
    return claims


async def _credential(kind: str, container: Container, client: httpx.AsyncClient) -> str | None:
    """The ``Authorization`` header value for a kind of bad credential (None = no header)."""
    if kind == "none":
        return None
    if kind == "basic":
        return "Basic dXNlcjpwYXNz"
    if kind == "bearer-empty":
        return "Bearer"
    if kind == "bearer-garbage":
        return "Bearer not-a-token"
    if kind == "three-garbage-segments":
        return "Bearer a.b.c"
    if kind == "unknown-key":
        return "Bearer pk_abcdefgh_" + "A" * 40
    if kind == "refresh-token-as-bearer":
        await container.accounts.create(email="r@example.com", password="long enough pw")
        pair = await container.auth.login(email="r@example.com", password="long enough pw")
        return f"Bearer {pair.refresh_token}"
    if kind == "revoked-key":
        _, key = await make_user(container, "revoked@example.com", role="admin")
        assert (await client.get("/v1/me", headers=bearer(key))).status_code == 200  # cached now
        (row,) = await container.auth.keys(actor=await container.auth.authenticate(key))
        await container.auth.revoke_key(row.id, actor=SYSTEM)
        return f"Bearer {key}"
    # Tokens built from a real login's claims: only the one thing under test is wrong.
    claims = await _real_claims(container)
    now = datetime.now(UTC)
    if kind == "expired-jwt":
        expired = claims | {"iat": now - timedelta(hours=2), "exp": now - timedelta(hours=1)}
        return f"Bearer {_encode(expired)}"
    if kind == "jwt-other-key":
        return f"Bearer {_encode(claims, 'another-secret-of-the-same-length-0123456789')}"
    if kind == "jwt-alg-none":
        return f"Bearer {_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."
    if kind == "jwt-hs512":  # the right secret, but not the pinned algorithm
        with warnings.catch_warnings():  # PyJWT: the test secret is short for SHA-512
            warnings.simplefilter("ignore", InsecureKeyLengthWarning)
            return f"Bearer {jwt.encode(claims, TEST_JWT_SECRET, algorithm='HS512')}"
    if kind == "jwt-typ-missing":
        return f"Bearer {_encode({k: v for k, v in claims.items() if k != 'typ'})}"
    if kind == "jwt-typ-refresh":
        return f"Bearer {_encode(claims | {'typ': 'refresh'})}"
    if kind == "jwt-other-issuer":
        return f"Bearer {_encode(claims | {'iss': 'someone-else'})}"
    raise AssertionError(kind)


BAD_CREDENTIALS = [
    "none",
    "basic",
    "bearer-empty",
    "bearer-garbage",
    "expired-jwt",
    "jwt-other-key",
    "jwt-alg-none",
    "jwt-hs512",
    "three-garbage-segments",
    "jwt-typ-missing",
    "jwt-typ-refresh",
    "jwt-other-issuer",
    "unknown-key",
    "revoked-key",
    "refresh-token-as-bearer",
]


async def test_the_forged_tokens_differ_from_a_valid_one_only_in_what_is_tested(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    # Re-signing the genuine claims with the right secret works: so each forged variant
    # above fails because of its one defect, not because the claims were wrong anyway.
    claims = await _real_claims(container)
    good = await app_client.get("/v1/me", headers=bearer(_encode(claims)))
    assert good.status_code == 200, good.text
    assert good.json()["auth"] == "token"


@pytest.mark.parametrize("kind", BAD_CREDENTIALS)
async def test_every_protected_route_refuses_bad_credentials(
    kind: str, container: Container, app_client: httpx.AsyncClient
) -> None:
    value = await _credential(kind, container, app_client)
    headers = {"Authorization": value} if value is not None else {}
    failures = []
    for method, template in PROTECTED:
        response = await call(app_client, method, template, headers)
        issues = unauthenticated_problems(response)
        if issues:
            failures.append(f"{method} {template}: {'; '.join(issues)}")
    assert not failures, f"{len(failures)} route(s) accepted or mishandled '{kind}':\n" + "\n".join(
        failures
    )


async def test_a_principal_never_carries_over_to_the_next_request(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    # The test host shares one ``scope["state"]`` between requests; authentication must not.
    a_id, a_key = await make_user(container, "a@example.com", role="admin")
    b_id, b_key = await make_user(container, "b@example.com")
    assert (await app_client.get("/v1/me", headers=bearer(a_key))).json()["id"] == a_id
    assert unauthenticated_problems(await app_client.get("/v1/me")) == []
    assert (await app_client.get("/v1/me", headers=bearer(b_key))).json()["id"] == b_id
    member = await app_client.get("/v1/admin/users", headers=bearer(b_key))
    assert forbidden_problems(member) == []


# public routes -----------------------------------------------------------------------------
async def test_public_get_routes_work_without_credentials(app_client: httpx.AsyncClient) -> None:
    for method, path in PUBLIC:
        if method != "GET":
            continue
        response = await app_client.get(path)
        assert response.status_code == 200, (path, response.status_code, response.text[:200])
    assert (await app_client.get("/openapi.json")).json()["info"]["title"] == "Parley"
    assert (await app_client.get("/livez")).json() == {"status": "ok"}
    assert "text/html" in (await app_client.get("/")).headers["content-type"]


async def test_login_with_a_bad_password_is_401_not_500(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    await container.accounts.create(email="a@example.com", password="the right password")
    for body in (
        {"email": "a@example.com", "password": "the wrong password"},
        {"email": "nobody@example.com", "password": "whatever it is"},
    ):
        response = await app_client.post("/v1/auth/login", json=body)
        assert response.status_code == 401, response.text
        assert _problem(response)["code"] == "unauthenticated"


async def test_refresh_with_a_bogus_token_is_401(app_client: httpx.AsyncClient) -> None:
    for token in ("prt_" + "x" * 43, "not-a-refresh-token", "pk_abcdefgh_" + "A" * 40):
        response = await app_client.post("/v1/auth/refresh", json={"refresh_token": token})
        assert response.status_code == 401, response.text
        assert _problem(response)["code"] == "unauthenticated"


# roles and key scopes ----------------------------------------------------------------------
def forbidden_problems(response: httpx.Response) -> list[str]:
    """What is wrong with a response that should be a 403 (empty = nothing)."""
    if response.status_code != 403:
        return [f"status {response.status_code}: {response.text[:200]}"]
    if not response.headers.get("content-type", "").startswith(PROBLEM_JSON):
        return [f"content-type {response.headers.get('content-type')!r}"]
    if response.json().get("code") != "forbidden":
        return [f"code {response.json().get('code')!r}"]
    return []


async def _all_forbidden(
    client: httpx.AsyncClient, routes: list[tuple[str, str]], credential: str
) -> list[str]:
    failures = []
    for method, template in routes:
        issues = forbidden_problems(await call(client, method, template, bearer(credential)))
        if issues:
            failures.append(f"{method} {template}: {'; '.join(issues)}")
    return failures


async def test_members_are_forbidden_on_every_admin_route(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    _, key = await make_user(container, "member@example.com", password="member password 1")
    pair = await container.auth.login(email="member@example.com", password="member password 1")
    me = (await app_client.get("/v1/me", headers=bearer(key))).json()
    assert me["role"] == "member" and set(me["scopes"]) == {"chat", "ingest"}
    for credential in (key, pair.access_token):
        failures = await _all_forbidden(app_client, ADMIN_ROUTES, credential)
        assert not failures, "\n".join(failures)


async def test_an_admins_chat_only_key_is_not_an_admin(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    user_id, full_key = await make_user(container, "boss@example.com", role="admin")
    chat_only = await container.auth.create_key(
        actor=SYSTEM, user_id=user_id, name="chat", scopes=["chat"]
    )
    # The same admin's full key passes: the 403s below come from the key's scope alone.
    ok = await app_client.get("/v1/admin/users", headers=bearer(full_key))
    assert ok.status_code == 200, ok.text
    failures = await _all_forbidden(app_client, ADMIN_ROUTES, chat_only.secret)
    assert not failures, "\n".join(failures)


async def test_scoped_keys_cannot_act_outside_their_scope(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    user_id, _ = await make_user(container, "m@example.com")
    chat = await container.auth.create_key(actor=SYSTEM, user_id=user_id, name="c", scopes=["chat"])
    ingest = await container.auth.create_key(
        actor=SYSTEM, user_id=user_id, name="i", scopes=["ingest"]
    )
    body = {"name": "docs"}
    refused = await app_client.post("/v1/collections", json=body, headers=bearer(chat.secret))
    assert forbidden_problems(refused) == []
    created = await app_client.post("/v1/collections", json=body, headers=bearer(ingest.secret))
    assert created.status_code == 201, created.text
    refused = await app_client.post("/v1/sessions", json={}, headers=bearer(ingest.secret))
    assert forbidden_problems(refused) == []
    # Reading is open to any scope.
    listed = await app_client.get("/v1/collections", headers=bearer(chat.secret))
    assert listed.status_code == 200, listed.text


# authentication before the body ------------------------------------------------------------
_JSON = {"content-type": "application/json"}


def test_the_authentication_middleware_is_registered_innermost() -> None:
    # Innermost (added first): its 401s still get the request id, security headers and CORS.
    middleware = [getattr(m, "cls", None) for m in _table_app().user_middleware]
    assert middleware[-1] is AuthenticationMiddleware, middleware


def test_public_paths_match_exactly_and_without_the_root_path() -> None:
    assert route_path({"path": "/api/livez", "root_path": "/api"}) == "/livez"
    assert route_path({"path": "/livez", "root_path": "/api"}) == "/livez"
    assert route_path({"path": "/apilivez", "root_path": "/api"}) == "/apilivez"
    assert route_path({"path": "/api", "root_path": "/api"}) == "/"
    assert is_public("/livez") and is_public("/v1/auth/login")
    for path in ("/livez/", "/LIVEZ", "/livez/../v1/me", "/v1/auth/logout", "/v1/auth"):
        assert not is_public(path), path


async def _raw_post(app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> tuple[int, bool]:
    """POST through the ASGI interface: (status, whether the app asked for the body)."""
    asked = False
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal asked
        asked = True
        return {"type": "http.request", "body": b'{"name": "x"}', "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"parley.test"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("parley.test", 80),
    }
    await app(scope, receive, send)
    return sent[0]["status"], asked


async def test_an_anonymous_body_is_never_read(container: Container, settings: Settings) -> None:
    async with LifespanManager(create_app(settings, container=container)) as manager:
        app = manager.app
        assert await _raw_post(app, "/v1/collections", []) == (401, False)
        forged = [(b"authorization", b"Bearer pk_abcdefgh_" + b"A" * 40)]
        assert await _raw_post(app, "/v1/collections", forged) == (401, False)
        _, key = await make_user(container, "reader@example.com")
        signed_in = [(b"authorization", f"Bearer {key}".encode())]
        assert await _raw_post(app, "/v1/collections", signed_in) == (201, True)


async def test_credentials_are_checked_before_the_body(
    container: Container, app_client: httpx.AsyncClient
) -> None:
    c = app_client
    for headers in ({}, {"Authorization": "Bearer pk_abcdefgh_" + "A" * 40}):
        malformed = await c.post("/v1/collections", content=b'{"name": ', headers=_JSON | headers)
        assert unauthenticated_problems(malformed) == []
        assert malformed.headers["x-request-id"]  # rendered inside the other middleware
        assert malformed.headers["x-content-type-options"] == "nosniff"
        upload = await c.post(
            f"/v1/collections/{uuid.uuid4().hex}/documents",
            files={"files": ("a.txt", b"hello " * 1000)},
            headers=headers,
        )
        assert unauthenticated_problems(upload) == []
        # Unknown paths do not reveal which routes exist to anonymous callers.
        assert unauthenticated_problems(await c.get("/v1/no-such-route", headers=headers)) == []
    # Public paths stay public, and CORS preflights pass through.
    assert (await c.get("/livez")).status_code == 200
    bad_login = await c.post("/v1/auth/login", json={"email": "x@example.com", "password": "p"})
    assert unauthenticated_problems(bad_login) == []
    assert (await c.options("/v1/collections")).status_code != 401
    # A signed-in caller reaches the route and its own checks (body, scopes, roles).
    user_id, key = await make_user(container, "mw@example.com")
    malformed = await c.post("/v1/collections", content=b'{"name": ', headers=_JSON | bearer(key))
    assert malformed.status_code == 422
    assert (await c.get("/v1/no-such-route", headers=bearer(key))).status_code == 404
    created = await c.post("/v1/collections", json={"name": "n"}, headers=bearer(key))
    assert created.status_code == 201, created.text
    me = (await c.get("/v1/me", headers=bearer(key))).json()
    assert me["id"] == user_id and me["auth"] == "api_key"
    chat = await container.auth.create_key(actor=SYSTEM, user_id=user_id, name="c", scopes=["chat"])
    chat_create = await c.post("/v1/collections", json={"name": "m"}, headers=bearer(chat.secret))
    assert forbidden_problems(chat_create) == []
    assert forbidden_problems(await c.get("/v1/admin/users", headers=bearer(key))) == []


# defence in depth: every route also authenticates on its own --------------------------------
@pytest.fixture
async def bare_client(container: Container, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app *without* AuthenticationMiddleware: only the routes' own dependencies guard."""
    app = create_app(settings, container=container)
    app.user_middleware = [
        m for m in app.user_middleware if getattr(m, "cls", None) is not AuthenticationMiddleware
    ]
    async with LifespanManager(app) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://parley.test") as c:
            yield c


@pytest.mark.parametrize("kind", ["none", "jwt-alg-none", "revoked-key"])
async def test_every_route_declares_its_own_authentication(
    kind: str, container: Container, bare_client: httpx.AsyncClient
) -> None:
    # A route without an ``*Actor`` dependency would answer here (and, behind the
    # middleware, run without a principal, so without any scope or role check).
    value = await _credential(kind, container, bare_client)
    headers = {"Authorization": value} if value is not None else {}
    failures = []
    for method, template in PROTECTED:
        issues = unauthenticated_problems(await call(bare_client, method, template, headers))
        if issues:
            failures.append(f"{method} {template}: {'; '.join(issues)}")
    assert not failures, "\n".join(failures)
