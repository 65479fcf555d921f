"""Every HTTP error is RFC 9457 problem+json with a stable ``code``, whoever produced it.

Route errors, request validation, the router's own 404 / 405, and what the middlewares emit
before a route runs (body size, authentication, CORS, rate limits, an unexpected crash) all
answer ``application/problem+json`` and carry the request id and the security headers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from parley.container import Container
from parley.domain.auth import SYSTEM
from parley.settings import RateLimitSettings, Settings
from tests.conftest import bearer, make_user

LIMIT = 4096
"""``PARLEY_LIMITS__MAX_REQUEST_BYTES`` for these tests."""
ALLOWED_ORIGIN = "https://app.example"
JSON = {"content-type": "application/json"}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A small request-size limit, CORS for one origin, and a one-per-minute chat limit."""
    generous = {k: "1000/minute" for k in RateLimitSettings.model_fields if k != "enabled"}
    limits = settings.limits.model_copy(update={"max_request_bytes": LIMIT})
    server = settings.server.model_copy(update={"cors_origins": [ALLOWED_ORIGIN]})
    rates = RateLimitSettings(enabled=True, **{**generous, "chat": "1/minute"})
    return settings.model_copy(update={"limits": limits, "server": server, "rate_limits": rates})


@dataclass
class Body:
    """A request body streamed in chunks, remembering whether the app asked for any."""

    chunks: int
    size: int = 1024
    read: int = field(default=0)

    async def stream(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.read += 1
            yield b" " * self.size


Call = Callable[[httpx.AsyncClient, Container], Awaitable[httpx.Response]]


async def declared_too_large(c: httpx.AsyncClient, _: Container) -> httpx.Response:
    # A 600 MB upload as announced; the app must answer without asking for a byte of it.
    body = Body(chunks=1)
    headers = {**JSON, "content-length": str(600 * 1024 * 1024)}
    r = await c.post("/v1/collections", content=body.stream(), headers=headers)
    assert body.read == 0, "the body was read"
    return r


async def declared_too_large_anonymous(c: httpx.AsyncClient, _: Container) -> httpx.Response:
    body = Body(chunks=1)
    headers = {**JSON, "content-length": str(LIMIT + 1), "authorization": ""}
    r = await c.post("/v1/collections", content=body.stream(), headers=headers)
    assert body.read == 0, "the body was read"
    return r


async def chunked_too_large(c: httpx.AsyncClient, _: Container) -> httpx.Response:
    # No Content-Length: the limit is enforced while the body streams in.
    body = Body(chunks=50)
    r = await c.post("/v1/collections", content=body.stream(), headers=JSON)
    assert "content-length" not in r.request.headers
    assert body.read < 50, "the whole body was read"
    return r


async def chunked_upload_too_large(c: httpx.AsyncClient, _: Container) -> httpx.Response:
    cid = (await c.post("/v1/collections", json={"name": "docs"})).json()["id"]
    boundary = "parleyboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="a.txt"\r\n'
        "Content-Type: text/plain\r\n\r\n"
    ).encode()
    body = Body(chunks=50)

    async def multipart() -> AsyncIterator[bytes]:
        yield head
        async for chunk in body.stream():
            yield chunk

    headers = {"content-type": f"multipart/form-data; boundary={boundary}"}
    r = await c.post(f"/v1/collections/{cid}/documents", content=multipart(), headers=headers)
    assert body.read < 50, "the whole body was read"
    return r


async def method_not_allowed(c: httpx.AsyncClient, _: Container) -> httpx.Response:
    r = await c.put("/v1/collections", json={"name": "x"})
    assert set(r.headers["allow"].split(", ")) == {"GET", "POST"}
    assert "PUT" in r.json()["detail"]
    return r


async def malformed_json(c: httpx.AsyncClient, _: Container) -> httpx.Response:
    r = await c.post("/v1/collections", content=b"nope", headers=JSON)
    detail = r.json()["detail"]
    assert detail == "body is not valid JSON: Expecting value at line 1 column 1", detail
    return r


async def malformed_json_later_line(c: httpx.AsyncClient, _: Container) -> httpx.Response:
    r = await c.post("/v1/collections", content=b'{\n  "name": "x",\n}', headers=JSON)
    detail = r.json()["detail"]
    assert detail.startswith("body is not valid JSON: ") and "line 3 column 1" in detail, detail
    return r


async def invalid_field(c: httpx.AsyncClient, _: Container) -> httpx.Response:
    r = await c.post("/v1/collections", json={"name": 5})
    assert r.json()["detail"].startswith("body.name: ")
    return r


async def unknown_path(c: httpx.AsyncClient, _: Container) -> httpx.Response:
    r = await c.get("/v1/no-such-thing")
    assert "/v1/no-such-thing" in r.json()["detail"]
    return r


async def unknown_collection(c: httpx.AsyncClient, _: Container) -> httpx.Response:
    return await c.get("/v1/collections/no-such-collection")


async def wrong_content_type(c: httpx.AsyncClient, _: Container) -> httpx.Response:
    r = await c.post(
        "/v1/collections", content=b'{"name": "x"}', headers={"content-type": "text/plain"}
    )
    assert "application/json" in r.json()["detail"]
    return r


async def json_to_an_upload(c: httpx.AsyncClient, _: Container) -> httpx.Response:
    cid = (await c.post("/v1/collections", json={"name": "docs"})).json()["id"]
    r = await c.post(f"/v1/collections/{cid}/documents", json={"files": ["a.txt"]})
    assert "multipart/form-data" in r.json()["detail"]
    return r


async def no_credentials(c: httpx.AsyncClient, _: Container) -> httpx.Response:
    r = await c.get("/v1/collections", headers={"authorization": ""})
    assert r.headers["www-authenticate"].startswith("Bearer")
    return r


async def bad_credentials(c: httpx.AsyncClient, _: Container) -> httpx.Response:
    return await c.get("/v1/collections", headers=bearer("pk_abcdefgh_" + "A" * 40))


async def missing_scope(c: httpx.AsyncClient, container: Container) -> httpx.Response:
    user_id, _ = await make_user(container, "reader@example.com")
    key = await container.auth.create_key(actor=SYSTEM, user_id=user_id, name="r", scopes=["chat"])
    return await c.post("/v1/collections", json={"name": "x"}, headers=bearer(key.secret))


async def rate_limited(c: httpx.AsyncClient, _: Container) -> httpx.Response:
    first = await c.post("/v1/sessions", json={"collection_ids": ["none"]})
    assert first.status_code == 404, first.text
    r = await c.post("/v1/sessions", json={"collection_ids": ["none"]})
    assert int(r.headers["retry-after"]) >= 1
    return r


async def cors_refused(c: httpx.AsyncClient, _: Container) -> httpx.Response:
    headers = {"origin": "https://evil.example", "access-control-request-method": "POST"}
    r = await c.options("/v1/collections", headers=headers)
    assert "access-control-allow-origin" not in r.headers
    return r


async def crash(c: httpx.AsyncClient, container: Container) -> httpx.Response:
    async def explode(**_: object) -> None:
        raise RuntimeError("boom")

    container.collections.page = explode  # type: ignore[method-assign,assignment]
    r = await c.get("/v1/collections", headers={"origin": ALLOWED_ORIGIN})
    assert "boom" not in r.text
    assert r.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    return r


CASES: list[tuple[Call, int, str]] = [
    (declared_too_large, 413, "payload_too_large"),
    (declared_too_large_anonymous, 413, "payload_too_large"),
    (chunked_too_large, 413, "payload_too_large"),
    (chunked_upload_too_large, 413, "payload_too_large"),
    (method_not_allowed, 405, "method_not_allowed"),
    (malformed_json, 422, "invalid_input"),
    (malformed_json_later_line, 422, "invalid_input"),
    (invalid_field, 422, "invalid_input"),
    (unknown_path, 404, "not_found"),
    (unknown_collection, 404, "not_found"),
    (wrong_content_type, 415, "unsupported_media_type"),
    (json_to_an_upload, 415, "unsupported_media_type"),
    (no_credentials, 401, "unauthenticated"),
    (bad_credentials, 401, "unauthenticated"),
    (missing_scope, 403, "forbidden"),
    (rate_limited, 429, "rate_limited"),
    (cors_refused, 400, "cors_refused"),
    (crash, 500, "internal_error"),
]


@pytest.mark.parametrize(("call", "status", "code"), CASES, ids=[c[0].__name__ for c in CASES])
async def test_every_error_is_problem_json(
    client: httpx.AsyncClient, container: Container, call: Call, status: int, code: str
) -> None:
    r = await call(client, container)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json", r.headers
    body = r.json()
    assert body["status"] == status and body["code"] == code, body
    assert body["type"].endswith(f"/{code}") and body["title"] and body["detail"], body
    assert r.headers["x-request-id"], "no request id"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["x-frame-options"] == "DENY"


async def test_a_quoted_request_id_is_echoed_in_the_problem(client: httpx.AsyncClient) -> None:
    r = await client.post(
        "/v1/collections", content=b"x" * (LIMIT + 1), headers={**JSON, "x-request-id": "abc-1"}
    )
    assert r.status_code == 413
    assert r.headers["x-request-id"] == "abc-1" and r.json()["request_id"] == "abc-1"


async def test_a_body_at_the_limit_is_accepted(client: httpx.AsyncClient) -> None:
    body = b'{"name": "x", "description": "' + b"d" * 10 + b'"}'
    padded = body + b" " * (LIMIT - len(body))
    r = await client.post("/v1/collections", content=padded, headers=JSON)
    assert r.status_code == 201, r.text
