"""Hostile input in every string field of the public API: never a 5xx, never another tenant's data.

SQL and full-text syntax, path traversal, very long and unicode-heavy strings (lone surrogates
included, sent as JSON escapes) go into bodies, multipart fields, path parameters and query
strings. Every answer must be a 4xx problem+json or a correct 2xx, and nothing member B gets
back may carry member A's data (a secret marker in A's document, A's ids). Payloads are
batched per test: each test sends many requests and reports every offence at once.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

import httpx
import pytest

from parley.container import Container
from parley.repositories.pagination import encode_cursor
from tests.api.test_tenancy import SECRET, As, Member, ingest, new_member
from tests.helpers import wait_for_job

SQL = [
    "'; DROP TABLE users; --",
    "1 OR 1=1",
    "' OR '1'='1",
    '" OR ""="',
    "x' UNION SELECT id, email, password_hash FROM users --",
    "%' OR 1=1 --",
    "\\'; DELETE FROM collections; --",
]
FTS = [
    '"unterminated',
    "NEAR(a b",
    "a AND OR NOT",
    "*",
    "col:val",
    "^",
    "&|!():*",
    "text: passphrase",
    "a & b | !c <-> d:*",
    "((((",
    '"" - + ~ {a b}:c',
    "NEAR/2",
    "%_",
]
TRAVERSAL = [
    "../../etc/passwd",
    "..\\..\\x.txt",
    "a/b/c.md",
    "/etc/passwd",
    "..%2F..%2Fetc%2Fpasswd",
    "file:///etc/passwd",
    "C:\\Windows\\win.ini",
]
UNICODE = [
    "🦄🔥👩‍👩‍👧‍👦" * 20,
    "\u202eevil\u202c \u200f\u200e",
    "e\u0301\u0302\u0303" * 100,
    "Z̷̢̛a̸l̴g̸o̵ t̷e̵x̸t̵",
    "\u200b\u200d\ufeff",
    "中文検索テスト한국어",
    "\ud800",  # lone surrogates: only expressible as JSON escapes
    "a\udfffb",
    "a\x00b",
    "\x01\x02\x1b[31m\x7f",
    "\r\n\t",
]
LONG = ["x" * 100_000, "é" * 5000, "a " * 3000]
PAYLOADS: list[str] = [*SQL, *FTS, *TRAVERSAL, *UNICODE, *LONG, "", " "]
SHORT = [p for p in PAYLOADS if len(p) <= 1000]

HOSTILE_IDS = [
    "../x",
    "..",
    "' OR 1=1 --",
    "%00",
    "\x00",
    "x" * 500,
    "ünïcødé-🦄",
    "\u202e",
    "*",
    "null",
    "-1",
    " ",
    "a/b",
    "a\\b",
]


def qs(value: str) -> str:
    """Percent-encode for a URL (every character, dots included; surrogates as their bytes)."""
    return quote(value.encode("utf-8", "surrogatepass"), safe="").replace(".", "%2E")


def jbody(value: Any) -> dict[str, Any]:
    """Request kwargs for a JSON body with ASCII escapes (lone surrogates become ``\\ud800``)."""
    return {"content": json.dumps(value), "headers": {"Content-Type": "application/json"}}


@dataclass
class Checker:
    """Sends requests and records every offence instead of stopping at the first."""

    client: httpx.AsyncClient
    forbidden: list[str] = field(default_factory=list)  # must never reach a member
    admin: dict[str, str] = field(default_factory=dict)  # whose answers may hold anything
    offences: list[str] = field(default_factory=list)
    sent: int = 0

    async def send(
        self,
        who: dict[str, str],
        method: str,
        url: str,
        *,
        label: str,
        ok: Iterable[int] | None = None,
        **kw: Any,
    ) -> httpx.Response | None:
        self.sent += 1
        headers = {**who, **kw.pop("headers", {})}
        params = kw.pop("params", None)
        if params:  # encoded here so that lone surrogates go out as (invalid) UTF-8 bytes
            url += ("&" if "?" in url else "?") + "&".join(
                f"{k}={qs(str(v))}" for k, v in params.items()
            )
        request = self.client.build_request(method, url, headers=headers, **kw)
        await request.aread()  # (multipart bodies are streams) so the content can be echoed
        try:
            r = await self.client.send(request)
        except Exception as exc:  # an app exception re-raised by the ASGI transport
            self.offences.append(f"{label}: raised {type(exc).__name__}: {exc!s:.200}")
            return None
        self.judge(r, label=label, ok=ok, sent=None if who == self.admin else request)
        return r

    def judge(
        self,
        r: httpx.Response,
        *,
        label: str,
        ok: Iterable[int] | None = None,
        sent: httpx.Request | None = None,
    ) -> None:
        code = r.status_code
        if code >= 500:
            self.offences.append(f"{label}: {code} {r.text[:300]}")
            return
        if ok is not None and code not in set(ok):
            self.offences.append(f"{label}: unexpected {code} {r.text[:200]}")
        if 400 <= code < 500:
            ctype = r.headers.get("content-type", "")
            if not ctype.startswith("application/problem+json"):
                self.offences.append(f"{label}: {code} is not problem+json ({ctype})")
            else:
                body = r.json()
                if body.get("status") != code or not body.get("code"):
                    self.offences.append(f"{label}: malformed problem {body}")
        if sent is None:  # an admin's answer: not a member's, so no tenancy check
            return
        # What the caller sent may be echoed back ("collection <id> not found"): not a leak.
        echoed = unquote(str(sent.url)) + sent.content.decode("utf-8", "replace")
        for secret in self.forbidden:
            if secret in r.text and secret not in echoed:
                self.offences.append(f"{label}: response leaks {secret!r}")

    def verdict(self) -> None:
        assert not self.offences, f"{len(self.offences)} of {self.sent} requests:\n" + "\n".join(
            self.offences[:60]
        )


@dataclass
class World:
    a: Member
    b: Member
    admin: dict[str, str]
    check: Checker


@pytest.fixture
async def world(client: httpx.AsyncClient, container: Container) -> World:
    """A owns a collection whose memo holds ``SECRET``; B owns one collection and a session."""
    a = await new_member(container, "alice@example.com")
    b = await new_member(container, "bob@example.com")
    a.collection_id, a.job_id, a.document_ids = await ingest(
        As(client, a), "alice-kb", "warranty.md", secret=True
    )
    b.collection_id, b.job_id, b.document_ids = await ingest(
        As(client, b), "bob-kb", "quickstart.txt", "faq.json"
    )
    r = await As(client, b).post("/v1/sessions", json={"collection_ids": [b.collection_id]})
    assert r.status_code == 201, r.text
    b.session_id = r.json()["id"]
    r = await As(client, a).post("/v1/sessions", json={"collection_ids": [a.collection_id]})
    a.session_id = r.json()["id"]
    admin = {"Authorization": client.headers["Authorization"]}
    # What B must never see: A's secret, email and ids.
    forbidden = [SECRET, a.email, a.user_id, a.collection_id, a.session_id, a.job_id]
    forbidden += a.document_ids
    return World(a, b, admin, Checker(client, forbidden=forbidden, admin=admin))


async def check_own_collections(
    check: Checker, who: dict[str, str], ids: list[str], label: str
) -> None:
    """Each id must be a collection ``who`` owns (created in this test)."""
    for cid in ids:
        r = await check.send(
            who, "GET", f"/v1/collections/{cid}", label=f"resolved {label}", ok=[200]
        )
        if r is not None and r.status_code == 200:
            grants = await check.send(who, "GET", f"/v1/collections/{cid}/grants", label=label)
            if grants is not None and grants.status_code != 200:  # only owners list grants
                check.offences.append(f"{label}: resolved to a collection B does not own")


async def assert_intact(client: httpx.AsyncClient, w: World) -> None:
    """Every table still answers and both tenants' data is where it was."""
    ua, ub = As(client, w.a), As(client, w.b)
    r = await ub.get("/v1/collections?limit=200")
    assert r.status_code == 200 and w.b.collection_id in {c["id"] for c in r.json()["items"]}
    assert w.a.collection_id not in r.text
    r = await ua.get(f"/v1/collections/{w.a.collection_id}")
    assert r.status_code == 200 and r.json()["documents"] == len(w.a.document_ids)
    r = await ua.post(
        "/v1/search", json={"query": "vault passphrase", "collection_ids": [w.a.collection_id]}
    )
    assert r.status_code == 200 and SECRET in r.text
    r = await ub.get(f"/v1/sessions/{w.b.session_id}/messages")
    assert r.status_code == 200
    r = await client.get("/v1/admin/users")
    assert r.status_code == 200
    emails = {u["email"] for u in r.json()["items"]}
    assert {w.a.email, w.b.email, "admin@example.com"} <= emails
    assert (await client.get("/v1/admin/audit")).status_code == 200
    r = await ub.post(f"/v1/sessions/{w.b.session_id}/messages", json={"content": "still there?"})
    assert r.status_code == 201, r.text


# --------------------------------------------------------------------------- JSON bodies


async def test_hostile_collection_session_key_and_grant_fields(
    client: httpx.AsyncClient, world: World
) -> None:
    w, check = world, world.check
    b, bcid = w.b.headers, w.b.collection_id
    for i, p in enumerate(PAYLOADS):
        label = f"[{i}] {p[:40]!r}"
        r = await check.send(
            b, "POST", "/v1/collections", label=f"collection name {label}", **jbody({"name": p})
        )
        if r is not None and r.status_code == 201:
            # A correct 2xx: the name is stored as given (trimmed) and reads back the same.
            created = r.json()
            if created["name"] != p.strip():
                check.offences.append(f"name {label} stored as {created['name'][:40]!r}")
            got = await check.send(
                b, "GET", f"/v1/collections/{created['id']}", label=f"get {label}", ok=[200]
            )
            if got is not None and got.status_code == 200 and got.json()["name"] != created["name"]:
                check.offences.append(f"name {label} reads back differently")
        await check.send(
            b,
            "POST",
            "/v1/collections",
            label=f"description {label}",
            **jbody({"name": f"described-{i}", "description": p}),
        )
        await check.send(
            b,
            "POST",
            "/v1/sessions",
            label=f"session title {label}",
            **jbody({"collection_ids": [bcid], "title": p}),
        )
        # By name (B may just have created a collection called ``p``): only ever B's own.
        for refs in ([p], [bcid, p], [p, w.a.collection_id]):
            r = await check.send(
                b,
                "POST",
                "/v1/sessions",
                label=f"session collection refs {label}",
                ok=[201, 404, 422] if w.a.collection_id not in refs else [404, 422],
                **jbody({"collection_ids": refs}),
            )
            if r is not None and r.status_code == 201:
                await check_own_collections(check, b, r.json()["collection_ids"], label)
        await check.send(b, "POST", "/v1/me/keys", label=f"key name {label}", **jbody({"name": p}))
        await check.send(
            b,
            "POST",
            f"/v1/collections/{bcid}/grants",
            label=f"grant email {label}",
            ok=[404, 422],
            **jbody({"email": p}),
        )
        await check.send(
            b,
            "POST",
            f"/v1/collections/{bcid}/grants",
            label=f"grant user_id {label}",
            ok=[404, 422],
            **jbody({"user_id": p, "permission": "read"}),
        )
        await check.send(
            b,
            "POST",
            f"/v1/collections/{bcid}/grants",
            label=f"grant permission {label}",
            ok=[422],
            **jbody({"user_id": w.a.user_id, "permission": p}),
        )
        await check.send(
            b,
            "PUT",
            f"/v1/me/provider-keys/{qs(p)[:2000] or 'x'}",
            label=f"provider key {label}",
            **jbody({"api_key": p}),
        )
    # B's keys list still works and shows no secrets; nothing B did granted it anything.
    await check.send(b, "GET", "/v1/me/keys", label="keys list", ok=[200])
    await check.send(b, "GET", "/v1/collections?limit=200", label="list", ok=[200])
    check.verdict()
    await assert_intact(client, w)


async def test_hostile_search_and_chat(client: httpx.AsyncClient, world: World) -> None:
    w, check = world, world.check
    b, bcid, sid = w.b.headers, w.b.collection_id, w.b.session_id
    own_docs = set(w.b.document_ids)

    def only_own(r: httpx.Response | None, label: str, key: str) -> None:
        if r is None or r.status_code >= 300:
            return
        body = r.json()
        items = body["results"] if key == "results" else body.get("sources", [])
        for hit in items:
            if hit["collection_id"] != bcid or hit["document_id"] not in own_docs:
                check.offences.append(f"{label}: foreign hit {hit['collection_id']}")

    for i, p in enumerate(PAYLOADS):
        label = f"[{i}] {p[:40]!r}"
        valid = bool(p.strip()) and len(p) <= 2000 and "\ud800" not in p and "\udfff" not in p
        r = await check.send(
            b,
            "POST",
            "/v1/search",
            label=f"search query {label}",
            ok=[200] if valid else [200, 422],
            **jbody({"query": p, "collection_ids": [bcid]}),
        )
        only_own(r, f"search {label}", "results")
        for filters in (
            {p: "x"},
            {"source": p},
            {"lang": p},
            {"lang": [p, 1, True]},
            {"document_id": [p, *w.a.document_ids]},
        ):
            r = await check.send(
                b,
                "POST",
                "/v1/search",
                label=f"search filters {filters!s:.60}",
                ok=[200, 422],
                **jbody({"query": "battery", "collection_ids": [bcid], "filters": filters}),
            )
            only_own(r, f"filters {label}", "results")
        await check.send(
            b,
            "POST",
            "/v1/search",
            label=f"search collection id {label}",
            ok=[404, 422],
            **jbody({"query": "passphrase", "collection_ids": [p]}),
        )
        await check.send(
            b,
            "POST",
            "/v1/search",
            label=f"search mixed ids {label}",
            ok=[404, 422],
            **jbody({"query": "passphrase", "collection_ids": [bcid, p]}),
        )
        for stream in (False, True):
            url = f"/v1/sessions/{sid}/messages" + ("?stream=true" if stream else "")
            r = await check.send(
                b,
                "POST",
                url,
                label=f"message {'stream ' if stream else ''}{label}",
                **jbody({"content": p}),
            )
            if r is None or r.status_code >= 300:
                continue
            if stream:
                events = [f for f in r.text.strip().split("\n\n") if f]
                last = dict(line.split(": ", 1) for line in events[-1].splitlines())
                if last["event"] != "done":
                    check.offences.append(f"stream {label}: ended with {last}")
                    continue
                only_own_answer = httpx.Response(200, json=json.loads(last["data"]))
                only_own(only_own_answer, f"stream {label}", "sources")
            else:
                only_own(r, f"message {label}", "sources")
    # Top-level shape attacks on the same endpoints.
    for body in (
        {"query": ["a"], "collection_ids": [bcid]},
        {"query": "a", "collection_ids": bcid},
        {"query": "a", "collection_ids": [bcid], "filters": "x"},
        {"query": "a", "collection_ids": [bcid], "filters": {"k": {"$ne": 1}}},
        {"query": "a", "collection_ids": [bcid], "filters": {"k": None}},
        {"query": "a", "collection_ids": [bcid], "filters": {"k": []}},
        {"query": "a", "collection_ids": [bcid], "filters": {"k": list(range(1000))}},
        {"query": "a", "collection_ids": [bcid], "top_k": "1; DROP TABLE chunks"},
        {"query": "a", "collection_ids": [bcid], "top_k": 10**30},
        {"query": "a", "collection_ids": [None]},
        {"query": "a", "collection_ids": [bcid] * 21},
        {"query": "a", "collection_ids": [bcid], "extra": 1},
    ):
        await check.send(
            b, "POST", "/v1/search", label=f"search shape {body!s:.60}", ok=[422], **jbody(body)
        )
    for raw in ("{", "[]", "null", '{"content": "\\ud800', "\xff\xfe", '{"content": 1}'):
        await check.send(
            b,
            "POST",
            f"/v1/sessions/{sid}/messages",
            label=f"raw body {raw!r}",
            ok=[422],
            content=raw.encode("utf-8", "surrogatepass"),
            headers={"Content-Type": "application/json"},
        )
    check.verdict()
    await assert_intact(client, w)


async def test_hostile_login_and_admin_fields(client: httpx.AsyncClient, world: World) -> None:
    w, check = world, world.check
    admin = w.admin
    for i, p in enumerate(PAYLOADS):
        label = f"[{i}] {p[:40]!r}"
        # Login is public: no credentials, wrong credentials, injection in either field.
        await check.send(
            {},
            "POST",
            "/v1/auth/login",
            label=f"login email {label}",
            ok=[401, 422, 429],
            **jbody({"email": p, "password": "x"}),
        )
        await check.send(
            {},
            "POST",
            "/v1/auth/login",
            label=f"login password {label}",
            ok=[401, 422, 429],
            **jbody({"email": "nobody@example.com", "password": p}),
        )
        await check.send(
            {},
            "POST",
            "/v1/auth/login",
            label=f"login A's email {label}",
            ok=[401, 422, 429],
            **jbody({"email": w.a.email, "password": p}),
        )
        await check.send(
            {},
            "POST",
            "/v1/auth/refresh",
            label=f"refresh {label}",
            ok=[401, 422, 429],
            **jbody({"refresh_token": p}),
        )
        await check.send(
            w.b.headers,
            "POST",
            "/v1/auth/logout",
            label=f"logout {label}",
            **jbody({"refresh_token": p}),
        )
        # Admin fields (admins may see everything, but still never a 5xx).
        await check.send(
            admin,
            "POST",
            "/v1/admin/users",
            label=f"user email {label}",
            ok=[201, 409, 422],
            **jbody({"email": p, "password": "long-enough-pw-1"}),
        )
        await check.send(
            admin,
            "POST",
            "/v1/admin/users",
            label=f"user password {label}",
            ok=[201, 422],
            **jbody({"email": f"u{i}@example.com", "password": p}),
        )
        for name in ("action", "actor_id", "target_id", "since", "until", "cursor", "limit"):
            await check.send(
                admin,
                "GET",
                "/v1/admin/audit",
                label=f"audit {name}={label}",
                params={name: p[:5000]},
            )
    # (``ok`` above: no injected login ever yielded tokens, for A or anyone.)
    check.verdict()
    await assert_intact(client, w)


# --------------------------------------------------------------------------- uploads


FILENAMES = [
    "../../etc/passwd",
    "..\\..\\x.txt",
    "a/b/c.md",
    "/abs/path.txt",
    "nul\x00byte.txt",
    "ctl\x01\x1b[31m\x7f.txt",
    "crlf\r\nX-Injected: 1.txt",
    'quote"semi;colon.txt',
    "'; DROP TABLE documents; --.txt",
    "\u202etxt.exe",
    "ünïcødé 🦄.md",
    "e\u0301.txt",
    ".",
    "..",
    "   ",
    "n" * 5000 + ".txt",
    "%2e%2e%2fescape.txt",
    "CON",
    "*?<>|.txt",
]


def unsafe_source(source: str) -> bool:
    """Whether a stored document source is anything but a plain, capped relative path."""
    segments = source.split("/")
    return (
        any(c in source for c in "\\\x00\r\n\u202e")
        or any(s in ("", ".", "..") or len(s) > 200 for s in segments)
        or len(source) > 500
    )


async def test_hostile_uploads(
    client: httpx.AsyncClient, world: World, container: Container
) -> None:
    w, check = world, world.check
    b, bcid = w.b.headers, w.b.collection_id
    url = f"/v1/collections/{bcid}/documents"
    jobs: list[tuple[str, str]] = []
    for i, name in enumerate(FILENAMES):
        text = f"Hostile upload {i}. The keyword is zanzibar{i}. {SQL[i % 7]} {FTS[i % 13]}"
        r = await check.send(
            b,
            "POST",
            url,
            label=f"filename {name[:40]!r}",
            ok=[202, 400, 413, 415, 422],
            files=[("files", (name, text.encode(), "text/plain"))],
        )
        if r is not None and r.status_code == 202:
            jobs.append((name, r.json()["job_id"]))
    # Metadata: JSON that is not an object, nested, hostile keys and values, huge.
    for i, meta in enumerate(
        [
            *PAYLOADS[:25],
            json.dumps({p: p for p in SHORT if p}),
            json.dumps({"a": {"b": 1}}),
            json.dumps([1, 2]),
            json.dumps({"k": "\ud800"}),
            '{"k": "\\ud800"}',
            json.dumps({"'; DROP TABLE chunks; --": "1 OR 1=1", "k": "x" * 9000}),
            "x" * 20_000,
        ]
    ):
        r = await check.send(
            b,
            "POST",
            url,
            label=f"metadata [{i}] {meta[:40]!r}",
            ok=[202, 413, 422],
            data={"metadata": meta},
            files=[("files", (f"meta-{i}.txt", f"metadata case {i}".encode()))],
        )
        if r is not None and r.status_code == 202:
            jobs.append((f"meta-{i}.txt", r.json()["job_id"]))
    # Hostile form shapes.
    await check.send(b, "POST", url, label="no files", ok=[422], data={"metadata": "{}"})
    await check.send(
        b, "POST", url, label="empty file", ok=[422], files=[("files", ("e.txt", b""))]
    )
    await check.send(
        b, "POST", url, label="json instead of multipart", ok=[415], **jbody({"files": []})
    )
    await check.send(
        b,
        "POST",
        url,
        label="same sanitized name twice",
        ok=[422],
        files=[("files", ("../same.txt", b"one")), ("files", ("same.txt", b"two"))],
    )
    # Every accepted upload finishes (failed is fine for junk, not a crash) with safe names.
    for name, job_id in jobs:
        job = await wait_for_job(client, job_id)
        for item in job["items"]:
            fn = item["filename"]
            if unsafe_source(fn):
                check.offences.append(f"upload {name[:40]!r} stored as unsafe {fn[:60]!r}")
    r = await check.send(b, "GET", f"{url}?limit=200", label="documents after uploads", ok=[200])
    assert r is not None
    for doc in r.json()["items"]:
        if unsafe_source(doc["source"]):
            check.offences.append(f"document source unsafe: {doc['source'][:60]!r}")
    # Stored files are in the database, not on disk next to anything.
    assert not (container.settings.data_dir.parent / "etc").exists()
    # The uploaded text is searchable in B's collection only, FTS syntax and all.
    r = await check.send(
        b,
        "POST",
        "/v1/search",
        label="search uploads",
        ok=[200],
        **jbody({"query": "zanzibar3 DROP TABLE", "collection_ids": [bcid]}),
    )
    if r is not None and r.status_code == 200:
        assert any("zanzibar3" in h["text"] for h in r.json()["results"]), r.text
    check.verdict()
    await assert_intact(client, w)


# --------------------------------------------------------------------------- paths and queries


def id_routes(w: World) -> list[tuple[str, str, dict[str, Any]]]:
    """(method, path template with {x}, request kwargs) for every route taking an id."""
    bcid = w.b.collection_id
    msg = jbody({"content": "hello"})
    return [
        ("GET", "/v1/collections/{x}", {}),
        ("DELETE", "/v1/collections/{x}", {}),
        ("GET", "/v1/collections/{x}/documents", {}),
        ("POST", "/v1/collections/{x}/documents", {"files": [("files", ("f.txt", b"hello"))]}),
        ("GET", "/v1/collections/{x}/grants", {}),
        ("POST", "/v1/collections/{x}/grants", jbody({"user_id": w.b.user_id})),
        ("DELETE", "/v1/collections/{x}/grants/" + w.b.user_id, {}),
        ("DELETE", f"/v1/collections/{bcid}/grants/{{x}}", {}),
        ("GET", "/v1/documents/{x}", {}),
        ("DELETE", "/v1/documents/{x}", {}),
        ("GET", "/v1/jobs/{x}", {}),
        ("POST", "/v1/jobs/{x}/cancel", {}),
        ("GET", "/v1/sessions/{x}", {}),
        ("DELETE", "/v1/sessions/{x}", {}),
        ("GET", "/v1/sessions/{x}/messages", {}),
        ("POST", "/v1/sessions/{x}/messages", msg),
        ("POST", "/v1/sessions/{x}/messages?stream=true", msg),
        ("DELETE", "/v1/me/keys/{x}", {}),
        ("DELETE", "/v1/me/provider-keys/{x}", {}),
    ]


ADMIN_ID_ROUTES = [
    ("GET", "/v1/admin/users/{x}", {}),
    ("PATCH", "/v1/admin/users/{x}", jbody({"role": "member"})),
    ("DELETE", "/v1/admin/users/{x}", {}),
    ("DELETE", "/v1/admin/keys/{x}", {}),
]


async def test_hostile_path_parameters(client: httpx.AsyncClient, world: World) -> None:
    w, check = world, world.check
    b = w.b.headers
    ids = [*HOSTILE_IDS, *SQL[:3], *FTS[:4], *UNICODE[:6], "\ud800"]
    for method, template, kw in id_routes(w):
        for x in ids:
            enc = qs(x)
            # Percent-encoded: the id arrives as sent, and must simply not be found.
            await check.send(
                b,
                method,
                template.replace("{x}", enc),
                label=f"{method} {template} {x[:30]!r}",
                ok=[404, 405, 422],
                **kw,
            )
        # A's real ids through B's credentials, and in case variants: 404 as well.
        for x in (
            w.a.collection_id,
            w.a.document_ids[0],
            w.a.job_id,
            w.a.session_id,
            w.a.collection_id.upper(),
            f" {w.a.session_id}",
            f"{w.a.document_ids[0]}%00",
        ):
            await check.send(
                b,
                method,
                template.replace("{x}", x),
                label=f"{method} {template} A-id {x!r}",
                ok=[404, 405, 422],
                **kw,
            )
    for method, template, kw in ADMIN_ID_ROUTES:
        for x in ids:
            enc = qs(x)
            await check.send(
                b,
                method,
                template.replace("{x}", enc),
                label=f"member {method} {template}",
                ok=[403, 404, 405],
                **kw,
            )
            await check.send(
                w.admin,
                method,
                template.replace("{x}", enc),
                label=f"admin {method} {template} {x[:30]!r}",
                ok=[404, 405, 422],
                **kw,
            )
    # Unencoded ids (the client normalizes dot segments etc.): anything but a 5xx or a leak.
    for method, template, kw in id_routes(w):
        for x in ("../x", "%00", "%2e%2e", "%ff", "%", "a?b=c", "a#b", "' OR 1=1 --"):
            await check.send(
                b, method, template.replace("{x}", x), label=f"raw {method} {template} {x!r}", **kw
            )
    check.verdict()
    await assert_intact(client, w)


def cursors() -> list[str]:
    """Well-formed (decodable) cursors carrying hostile values, plus plain junk."""
    crafted = [
        ["'; DROP TABLE collections; --", "x"],
        ["2020-01-01T00:00:00", "' OR 1=1 --"],
        ["2020-01-01T00:00:00+00:00", "\x00"],
        ["2020-01-01T00:00:00", "\ud800"],
        ["9999-12-31T23:59:59.999999+14:00", "z" * 64],
        ["0001-01-01T00:00:00-12:00", ""],
        ["0001-01-01T00:00:00+14:00", "x"],  # before year 1 in UTC
        ["9999-12-31T23:59:59-14:00", "x"],  # after year 9999 in UTC
        ["2020-01-01T00:00:00\x00", "x"],
        ["2020-01-01", 1e308],
        [None, None],
        [{"a": 1}, ["b"]],
        [2**70],
        [2**63],
        [-1],
        [True],
        [1.5],
        ["1"],
        [],
        ["a", "b", "c"],
        "not a list",
    ]
    out = [
        encode_cursor(c)
        if isinstance(c, list)
        else base64.urlsafe_b64encode(json.dumps(c).encode()).decode().rstrip("=")
        for c in crafted
    ]
    return [*out, *SHORT, "%00", "====", "eyJ", "x" * 512, "x" * 513]


async def test_hostile_cursor_limit_and_filters(client: httpx.AsyncClient, world: World) -> None:
    w, check = world, world.check
    b, admin = w.b.headers, w.admin
    member_lists = [
        "/v1/collections",
        "/v1/sessions",
        f"/v1/collections/{w.b.collection_id}/documents",
        f"/v1/sessions/{w.b.session_id}/messages",
    ]
    admin_lists = ["/v1/admin/users", "/v1/admin/audit"]
    # A message exists in B's session so that its list has something to page through.
    r = await As(client, w.b).post(
        f"/v1/sessions/{w.b.session_id}/messages", json={"content": "hi"}
    )
    assert r.status_code == 201
    for cursor in cursors():
        for url in member_lists:
            await check.send(
                b,
                "GET",
                url,
                label=f"{url} cursor={cursor[:40]!r}",
                ok=[200, 422],
                params={"cursor": cursor},
            )
        for url in admin_lists:
            await check.send(
                admin,
                "GET",
                url,
                label=f"{url} cursor={cursor[:40]!r}",
                ok=[200, 422],
                params={"cursor": cursor},
            )
    for limit in [
        "0",
        "-1",
        "201",
        "1e3",
        "NaN",
        "1 OR 1=1",
        "9" * 40,
        "",
        "\uff11",  # FULLWIDTH DIGIT ONE
        "0x10",
        "\x00",
        "🦄",
    ]:
        for url in member_lists:
            await check.send(
                b,
                "GET",
                url,
                label=f"{url} limit={limit!r}",
                ok=[200, 422],
                params={"limit": limit},
            )
        for url in admin_lists:
            await check.send(
                admin,
                "GET",
                url,
                label=f"{url} limit={limit!r}",
                ok=[200, 422],
                params={"limit": limit},
            )
    for status in SHORT:
        await check.send(
            b,
            "GET",
            f"/v1/collections/{w.b.collection_id}/documents",
            label=f"documents status={status[:40]!r}",
            ok=[200, 422],
            params={"status": status},
        )
    # Audit filters: hostile strings, globs and dates.
    for value in [
        *SHORT,
        "user.*",
        "%",
        "_",
        "%.*",
        "*.*",
        ".*",
        "2020-13-45",
        "9999-12-31T23:59:59Z",
        "0000-00-00",
        "1e10",
        "2020-01-01T00:00:00+99:00",
    ]:
        for name in ("action", "actor_id", "target_id", "since", "until"):
            await check.send(
                admin,
                "GET",
                "/v1/admin/audit",
                label=f"audit {name}={value[:40]!r}",
                ok=[200, 422],
                params={name: value},
            )
    # A LIKE wildcard in the glob is literal, not a match-everything.
    r = await client.get("/v1/admin/audit", params={"action": "%.*"})
    assert r.status_code == 200 and r.json()["items"] == [], r.text
    # Paging B's listings never reaches A's items, whatever the cursor.
    for url in ("/v1/collections", "/v1/sessions"):
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": "1", **({"cursor": cursor} if cursor else {})}
            r = await check.send(b, "GET", url, label=f"page {url}", ok=[200], params=params)
            assert r is not None
            seen += [i["id"] for i in r.json()["items"]]
            cursor = r.json()["next_cursor"]
            if not cursor:
                break
        assert seen and not set(seen) & {w.a.collection_id, w.a.session_id}
    check.verdict()
    await assert_intact(client, w)


async def test_audit_time_filters_out_of_range(client: httpx.AsyncClient, world: World) -> None:
    # One request (each 500 logs a long traceback); "9999-12-31T23:59:59-14:00" likewise.
    r = await client.get("/v1/admin/audit", params={"since": "0001-01-01T00:00:00+14:00"})
    assert r.status_code in (200, 422), r.text


async def test_hostile_headers_and_methods(client: httpx.AsyncClient, world: World) -> None:
    """Credentials and content types are strings too."""
    w, check = world, world.check
    check.forbidden = [SECRET, w.a.email]
    creds = [
        *SQL,
        "pk_",
        "pk_AAAAAAAA_" + "x" * 20,
        "pk_" + "A" * 8 + "_" + "'; DROP TABLE api_keys; --x",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.e30.",
        "x" * 5000,
        "🦄",
        "pk_ÄÄÄÄÄÄÄÄ_" + "y" * 30,
    ]
    for cred in creds:
        try:
            headers = {"Authorization": f"Bearer {cred}"}
            httpx.Headers(headers)
        except (UnicodeEncodeError, ValueError):
            headers = {"Authorization": b"Bearer " + cred.encode()}  # type: ignore[dict-item]
        for method, url in (("GET", "/v1/collections"), ("POST", "/v1/search"), ("GET", "/v1/me")):
            await check.send(
                headers,
                method,
                url,
                label=f"credential {cred[:30]!r} {url}",
                ok=[401],
                **jbody({"query": "x", "collection_ids": ["y"]}),
            )
    for ctype in (
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=utf-16",
        "application/json\x00",
    ):
        await check.send(
            w.b.headers,
            "POST",
            "/v1/collections",
            label=f"content-type {ctype!r}",
            ok=[201, 400, 415, 422],
            content=b'{"name": "ct"}',
            headers={"Content-Type": ctype},
        )
    check.verdict()
    await assert_intact(client, w)
