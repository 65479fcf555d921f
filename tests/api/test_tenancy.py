"""Tenant isolation over HTTP: owners, grants (read / write), revocation, admins, audit.

Two members, A and B, share one server. Everything of A's that B is not entitled to answers
404 exactly like an unknown id (never 403), whatever the route: REST, search and chat alike;
B's attempts leave A's data untouched. Grants widen B's view one step at a time and a revoke
narrows it again at once, including for a session B opened while it could read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from parley.container import Container
from tests.conftest import bearer, example_files, make_user
from tests.helpers import wait_for_job

SECRET = "ZEBRAQUARTZ-7731"
"""A marker only A's document contains: it must never reach B."""

SECRET_DOC = (
    "Internal memo.\n\n"
    f"The vault passphrase is {SECRET}. Store the passphrase in the vault and never share "
    f"the vault passphrase {SECRET} with anyone outside the team.\n"
).encode()


@dataclass
class Member:
    """A member's id, credentials and what it created during setup."""

    user_id: str
    email: str
    headers: dict[str, str]
    collection_id: str = ""
    document_ids: list[str] = field(default_factory=list)
    job_id: str = ""
    session_id: str = ""


class As:
    """Requests on behalf of one member (its bearer header on every call)."""

    def __init__(self, client: httpx.AsyncClient, member: Member) -> None:
        self.c = client
        self.m = member

    async def request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        headers = {**self.m.headers, **kw.pop("headers", {})}
        return await self.c.request(method, url, headers=headers, **kw)

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("GET", url, **kw)

    async def post(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("POST", url, **kw)

    async def delete(self, url: str, **kw: Any) -> httpx.Response:
        return await self.request("DELETE", url, **kw)


def assert_not_found(r: httpx.Response, what: str) -> None:
    """404 problem+json, and nothing of A's in the body."""
    assert r.status_code == 404, f"{what}: {r.status_code} {r.text}"
    assert r.headers["content-type"].startswith("application/problem+json"), what
    assert r.json()["code"] == "not_found", what
    assert SECRET not in r.text, what


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


async def new_member(container: Container, email: str) -> Member:
    user_id, key = await make_user(container, email)
    return Member(user_id=user_id, email=email, headers=bearer(key))


async def ingest(
    who: As, name: str, *files: str, secret: bool = False, description: str | None = None
) -> tuple[str, str, list[str]]:
    """Create a collection as ``who``, upload files, wait: (collection id, job id, doc ids)."""
    body: dict[str, Any] = {"name": name}
    if description is not None:
        body["description"] = description
    r = await who.post("/v1/collections", json=body)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    upload = example_files(*files)
    if secret:
        upload.append(("files", ("vault-memo.txt", SECRET_DOC)))
    r = await who.post(f"/v1/collections/{cid}/documents", files=upload)
    assert r.status_code == 202, r.text
    job = await wait_for_job_as(who, r.json()["job_id"])
    assert job["status"] == "succeeded", job
    docs = [i["document_id"] for i in job["items"] if i["document_id"]]
    assert len(docs) == len(upload)
    return cid, job["id"], docs


async def wait_for_job_as(who: As, job_id: str) -> dict[str, Any]:
    """Poll as the admin (``client``'s own credentials), then read it once as ``who``."""
    await wait_for_job(who.c, job_id)
    r = await who.get(f"/v1/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def chat(who: As, session_id: str, content: str, *, stream: bool = False) -> dict[str, Any]:
    """One turn; returns the final assistant message (the ``done`` event when streaming)."""
    url = f"/v1/sessions/{session_id}/messages" + ("?stream=true" if stream else "")
    r = await who.post(url, json={"content": content})
    if stream:
        assert r.status_code == 200, r.text
        events = parse_sse(r.text)
        assert events[-1][0] == "done", events
        return events[-1][1]
    assert r.status_code == 201, r.text
    return dict(r.json())


def cited_docs(answer: dict[str, Any]) -> set[str]:
    return {s["document_id"] for s in answer["sources"]}


def cited_collections(answer: dict[str, Any]) -> set[str]:
    return {s["collection_id"] for s in answer["sources"]}


@pytest.fixture
async def tenants(client: httpx.AsyncClient, container: Container) -> tuple[Member, Member]:
    """A with a collection (example docs + a secret memo), a session and one turn; B with its
    own collection and session. ``client`` stays authenticated as an admin."""
    a = await new_member(container, "alice@example.com")
    b = await new_member(container, "bob@example.com")
    ua, ub = As(client, a), As(client, b)
    a.collection_id, a.job_id, a.document_ids = await ingest(
        ua, "alice-kb", "warranty.md", "faq.json", secret=True, description="alice private"
    )
    r = await ua.post("/v1/sessions", json={"collection_ids": [a.collection_id], "title": "A1"})
    assert r.status_code == 201, r.text
    a.session_id = r.json()["id"]
    answer = await chat(ua, a.session_id, "What is the vault passphrase?")
    assert cited_docs(answer) & set(a.document_ids)
    assert any(SECRET in s["snippet"] for s in answer["sources"])
    b.collection_id, b.job_id, b.document_ids = await ingest(ub, "bob-kb", "quickstart.txt")
    r = await ub.post("/v1/sessions", json={"collection_ids": [b.collection_id]})
    assert r.status_code == 201, r.text
    b.session_id = r.json()["id"]
    return a, b


async def snapshot(who: As, m: Member) -> dict[str, Any]:
    """What the owner sees of its data (to compare before / after B's attempts)."""
    col = (await who.get(f"/v1/collections/{m.collection_id}")).json()
    docs = (await who.get(f"/v1/collections/{m.collection_id}/documents")).json()["items"]
    sess = (await who.get(f"/v1/sessions/{m.session_id}")).json()
    msgs = (await who.get(f"/v1/sessions/{m.session_id}/messages")).json()["items"]
    job = (await who.get(f"/v1/jobs/{m.job_id}")).json()
    return {
        "collection": (col["id"], col["name"], col["documents"], col["chunks"]),
        "documents": sorted((d["id"], d["status"], d["chunk_count"]) for d in docs),
        "session": (sess["id"], sess["collection_ids"], sess["message_count"]),
        "messages": [(x["id"], x["role"], x["content"]) for x in msgs],
        "job": (job["id"], job["status"]),
    }


async def test_member_cannot_reach_another_members_data(
    client: httpx.AsyncClient, tenants: tuple[Member, Member]
) -> None:
    a, b = tenants
    ua, ub = As(client, a), As(client, b)
    before = await snapshot(ua, a)
    cid, sid = a.collection_id, a.session_id

    # Collections, documents, uploads.
    assert_not_found(await ub.get(f"/v1/collections/{cid}"), "get collection")
    assert_not_found(await ub.get(f"/v1/collections/{cid}/documents"), "list documents")
    assert_not_found(
        await ub.post(f"/v1/collections/{cid}/documents", files=example_files("models.csv")),
        "upload",
    )
    for d in a.document_ids:
        assert_not_found(await ub.get(f"/v1/documents/{d}"), "get document")
        assert_not_found(await ub.delete(f"/v1/documents/{d}"), "delete document")
    assert_not_found(await ub.get(f"/v1/collections/{cid}/grants"), "list grants")
    assert_not_found(
        await ub.post(f"/v1/collections/{cid}/grants", json={"user_id": b.user_id}),
        "self-grant",
    )
    assert_not_found(await ub.delete(f"/v1/collections/{cid}/grants/{b.user_id}"), "unshare")

    # Jobs.
    assert_not_found(await ub.get(f"/v1/jobs/{a.job_id}"), "get job")
    assert_not_found(await ub.post(f"/v1/jobs/{a.job_id}/cancel"), "cancel job")

    # Search: alone, and mixed with one of B's own ids (no partial answer either).
    for ids in ([cid], [b.collection_id, cid], [cid, b.collection_id]):
        r = await ub.post(
            "/v1/search", json={"query": f"vault passphrase {SECRET}", "collection_ids": ids}
        )
        assert_not_found(r, f"search {ids}")

    # Sessions over A's collection, by id and by name.
    for ref in (cid, "alice-kb"):
        r = await ub.post("/v1/sessions", json={"collection_ids": [ref]})
        assert_not_found(r, f"session over {ref}")
        r = await ub.post("/v1/sessions", json={"collection_ids": [b.collection_id, ref]})
        assert_not_found(r, f"session over own + {ref}")

    # A's session: read, messages, turns (streamed and not), delete.
    assert_not_found(await ub.get(f"/v1/sessions/{sid}"), "get session")
    assert_not_found(await ub.get(f"/v1/sessions/{sid}/messages"), "list messages")
    for url in (f"/v1/sessions/{sid}/messages", f"/v1/sessions/{sid}/messages?stream=true"):
        assert_not_found(await ub.post(url, json={"content": "passphrase?"}), url)
    r = await ub.post(
        f"/v1/sessions/{sid}/messages",
        json={"content": "passphrase?"},
        headers={"Accept": "text/event-stream"},
    )
    assert_not_found(r, "turn with Accept: text/event-stream")
    assert_not_found(await ub.delete(f"/v1/sessions/{sid}"), "delete session")

    # Deleting the collection last (had any earlier DELETE worked, the rest would be moot).
    assert_not_found(await ub.delete(f"/v1/collections/{cid}"), "delete collection")

    # Listings never include A's items.
    cols = (await ub.get("/v1/collections")).json()["items"]
    assert [c["id"] for c in cols] == [b.collection_id]
    sessions = (await ub.get("/v1/sessions")).json()["items"]
    assert [s["id"] for s in sessions] == [b.session_id]

    # B's own search and chat never cite A's documents, even when asking for A's secret.
    r = await ub.post(
        "/v1/search",
        json={"query": f"vault passphrase {SECRET}", "collection_ids": [b.collection_id]},
    )
    assert r.status_code == 200, r.text
    hits = r.json()["results"]
    assert hits and {h["collection_id"] for h in hits} == {b.collection_id}
    assert SECRET not in r.text
    for stream in (False, True):
        answer = await chat(
            ub, b.session_id, f"What is the vault passphrase {SECRET}?", stream=stream
        )
        assert cited_collections(answer) <= {b.collection_id}
        assert not cited_docs(answer) & set(a.document_ids)
        assert all(SECRET not in s["snippet"] for s in answer["sources"])

    # A's data is intact: nothing B did changed it, and A still works with it.
    assert await snapshot(ua, a) == before
    r = await ua.post("/v1/search", json={"query": "vault passphrase", "collection_ids": [cid]})
    assert r.status_code == 200 and SECRET in r.text
    answer = await chat(ua, sid, "Remind me of the vault passphrase")
    assert cited_docs(answer) & set(a.document_ids)


async def test_collection_names_are_per_owner(
    client: httpx.AsyncClient, tenants: tuple[Member, Member]
) -> None:
    a, b = tenants
    ua, ub = As(client, a), As(client, b)
    r = await ub.post("/v1/collections", json={"name": "alice-kb"})
    assert r.status_code == 201, r.text
    b_same = r.json()["id"]
    assert b_same != a.collection_id
    r = await ua.post("/v1/collections", json={"name": "alice-kb"})
    assert r.status_code == 409, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "conflict"
    r = await ua.post("/v1/collections", json={"name": "  alice-kb  "})  # stripped: same name
    assert r.status_code == 409, r.text
    # A name resolves in the caller's own namespace.
    r = await ub.post("/v1/sessions", json={"collection_ids": ["alice-kb"]})
    assert r.status_code == 201, r.text
    assert r.json()["collection_ids"] == [b_same]
    r = await ua.post("/v1/sessions", json={"collection_ids": ["alice-kb"]})
    assert r.status_code == 201, r.text
    assert r.json()["collection_ids"] == [a.collection_id]
    # A's listing is unaffected by B's namesake.
    ids = [c["id"] for c in (await ua.get("/v1/collections")).json()["items"]]
    assert ids == [a.collection_id]


async def test_grants_read_then_write_then_revoke(
    client: httpx.AsyncClient, container: Container, tenants: tuple[Member, Member]
) -> None:
    a, b = tenants
    ua, ub = As(client, a), As(client, b)
    carol = await new_member(container, "carol@example.com")
    uc = As(client, carol)
    cid = a.collection_id
    grants = f"/v1/collections/{cid}/grants"

    # --- read grant (by email) ---
    r = await ua.post(grants, json={"email": b.email, "permission": "read"})
    assert r.status_code == 201, r.text
    assert r.json()["user_id"] == b.user_id and r.json()["permission"] == "read"
    # No cache poke needed: sharing invalidates B's readable set on this instance.
    assert cid in [c["id"] for c in (await ub.get("/v1/collections")).json()["items"]]
    assert (await ub.get(f"/v1/collections/{cid}")).status_code == 200
    docs = (await ub.get(f"/v1/collections/{cid}/documents")).json()["items"]
    assert {d["id"] for d in docs} == set(a.document_ids)
    assert (await ub.get(f"/v1/documents/{a.document_ids[0]}")).status_code == 200
    assert (await ub.get(f"/v1/jobs/{a.job_id}")).status_code == 200
    r = await ub.post(
        "/v1/search",
        json={"query": "vault passphrase", "collection_ids": [b.collection_id, cid]},
    )
    assert r.status_code == 200 and SECRET in r.text
    r = await ub.post("/v1/sessions", json={"collection_ids": [cid, b.collection_id]})
    assert r.status_code == 201, r.text
    shared_session = r.json()["id"]
    r = await ub.post("/v1/sessions", json={"collection_ids": ["alice-kb"]})  # by name
    assert r.status_code == 201 and r.json()["collection_ids"] == [cid], r.text
    only_shared = r.json()["id"]
    answer = await chat(ub, shared_session, "What is the vault passphrase?")
    assert cited_docs(answer) & set(a.document_ids)
    # ...but read does not let B change anything, or pass the collection on.
    assert_not_found(
        await ub.post(f"/v1/collections/{cid}/documents", files=example_files("models.csv")),
        "upload with read grant",
    )
    assert_not_found(await ub.delete(f"/v1/documents/{a.document_ids[0]}"), "delete doc (read)")
    assert_not_found(await ub.post(f"/v1/jobs/{a.job_id}/cancel"), "cancel job (read)")
    assert_not_found(await ub.delete(f"/v1/collections/{cid}"), "delete collection (read)")
    assert_not_found(
        await ub.post(grants, json={"user_id": carol.user_id, "permission": "read"}),
        "share onward (read)",
    )
    assert_not_found(await ub.get(grants), "list grants (read)")
    assert_not_found(await ub.delete(f"{grants}/{b.user_id}"), "self-revoke (read)")
    # Carol was never granted anything.
    assert_not_found(await uc.get(f"/v1/collections/{cid}"), "carol get")
    # A's session is still A's alone, shared collection or not.
    assert_not_found(await ub.get(f"/v1/sessions/{a.session_id}"), "A's session (read)")

    # --- write grant (by user id; posting again changes the permission) ---
    r = await ua.post(grants, json={"user_id": b.user_id, "permission": "write"})
    assert r.status_code == 201 and r.json()["permission"] == "write", r.text
    listed = (await ua.get(grants)).json()["items"]
    assert [(g["user_id"], g["permission"]) for g in listed] == [(b.user_id, "write")]
    r = await ub.post(f"/v1/collections/{cid}/documents", files=example_files("models.csv"))
    assert r.status_code == 202, r.text
    job = await wait_for_job_as(ub, r.json()["job_id"])
    assert job["status"] == "succeeded", job
    (b_doc,) = [i["document_id"] for i in job["items"]]
    assert (await ua.get(f"/v1/documents/{b_doc}")).status_code == 200  # the owner sees it
    victim = a.document_ids[0]  # warranty.md
    assert (await ub.delete(f"/v1/documents/{victim}")).status_code == 204
    assert_not_found(await ua.get(f"/v1/documents/{victim}"), "deleted by writer")
    assert_not_found(await ub.delete(f"/v1/collections/{cid}"), "delete collection (write)")
    assert_not_found(
        await ub.post(grants, json={"user_id": carol.user_id, "permission": "read"}),
        "share onward (write)",
    )
    assert_not_found(await ub.get(grants), "list grants (write)")
    assert_not_found(await uc.get(f"/v1/collections/{cid}"), "carol still nothing")
    assert (await ua.get(f"/v1/collections/{cid}")).status_code == 200

    # --- revoke ---
    assert (await ua.delete(f"{grants}/{b.user_id}")).status_code == 204
    assert (await ua.get(grants)).json()["items"] == []
    assert_not_found(await ub.get(f"/v1/collections/{cid}"), "get after revoke")
    assert_not_found(await ub.get(f"/v1/collections/{cid}/documents"), "docs after revoke")
    assert_not_found(await ub.get(f"/v1/documents/{a.document_ids[1]}"), "doc after revoke")
    assert_not_found(await ub.get(f"/v1/documents/{b_doc}"), "B's upload after revoke")
    assert_not_found(await ub.get(f"/v1/jobs/{a.job_id}"), "job after revoke")
    assert_not_found(
        await ub.post(f"/v1/collections/{cid}/documents", files=example_files("faq.json")),
        "upload after revoke",
    )
    assert_not_found(await ub.delete(f"/v1/documents/{a.document_ids[1]}"), "delete after revoke")
    r = await ub.post(
        "/v1/search",
        json={"query": "vault passphrase", "collection_ids": [b.collection_id, cid]},
    )
    assert_not_found(r, "search after revoke")
    assert_not_found(
        await ub.post("/v1/sessions", json={"collection_ids": [cid]}), "session after revoke"
    )
    assert cid not in [c["id"] for c in (await ub.get("/v1/collections")).json()["items"]]
    # The session B opened while it could read stays B's, but no longer retrieves from A's
    # collection: streamed or not, repeated (no cached search may serve it either).
    for session in (shared_session, only_shared):
        for stream in (False, True, False):
            answer = await chat(ub, session, "What is the vault passphrase?", stream=stream)
            assert not cited_docs(answer) & (set(a.document_ids) | {b_doc}), answer["sources"]
            assert cited_collections(answer) <= {b.collection_id}
            assert SECRET not in json.dumps(answer)
    # Its history is B's own and holds nothing of A's either (answers after the revoke).
    r = await ub.get(f"/v1/sessions/{only_shared}/messages")
    assert r.status_code == 200 and SECRET not in r.text
    # A re-share works again immediately.
    r = await ua.post(grants, json={"user_id": b.user_id, "permission": "read"})
    assert r.status_code == 201
    answer = await chat(ub, shared_session, "What is the vault passphrase?")
    assert cited_docs(answer) & set(a.document_ids)

    # Sharing is audited (and unsharing), with who did it and to whom.
    r = await client.get("/v1/admin/audit", params={"action": "collection.share"})
    assert r.status_code == 200, r.text
    shares = r.json()["items"]
    assert len(shares) == 3
    assert all(e["action"] == "collection.share" for e in shares)
    assert all(e["actor_id"] == a.user_id and e["target_id"] == cid for e in shares)
    assert [e["detail"]["permission"] for e in shares] == ["read", "write", "read"]  # newest 1st
    assert {e["detail"]["user_id"] for e in shares} == {b.user_id}
    r = await client.get("/v1/admin/audit", params={"action": "collection.unshare"})
    assert [e["target_id"] for e in r.json()["items"]] == [cid]
    # Failed attempts (B sharing onward) are not recorded as shares.
    assert all(e["actor_id"] != b.user_id for e in shares)
    # Members cannot read the audit log.
    assert (await ub.get("/v1/admin/audit")).status_code == 403


async def test_admin_sees_every_tenant(
    client: httpx.AsyncClient, tenants: tuple[Member, Member]
) -> None:
    a, b = tenants
    cols = {c["id"] for c in (await client.get("/v1/collections")).json()["items"]}
    assert {a.collection_id, b.collection_id} <= cols
    sessions = {s["id"] for s in (await client.get("/v1/sessions")).json()["items"]}
    assert {a.session_id, b.session_id} <= sessions
    assert (await client.get(f"/v1/collections/{a.collection_id}")).status_code == 200
    assert (await client.get(f"/v1/sessions/{b.session_id}/messages")).status_code == 200
    assert (await client.get(f"/v1/jobs/{a.job_id}")).status_code == 200
    r = await client.post(
        "/v1/search",
        json={"query": "vault passphrase", "collection_ids": [a.collection_id, b.collection_id]},
    )
    assert r.status_code == 200 and SECRET in r.text
    # Admins may manage any collection's grants, and delete it.
    r = await client.post(f"/v1/collections/{a.collection_id}/grants", json={"user_id": b.user_id})
    assert r.status_code == 201, r.text
    assert (await client.delete(f"/v1/collections/{b.collection_id}")).status_code == 204
    ub = As(client, b)
    assert_not_found(await ub.get(f"/v1/collections/{b.collection_id}"), "deleted by admin")
    assert (await ub.get(f"/v1/collections/{a.collection_id}")).status_code == 200
