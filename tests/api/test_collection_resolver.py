"""One collection resolver: every route that takes a collection accepts its id or its name.

The rule (``services.access.pick_collection``): an exact id match among collections the
caller can read wins; otherwise the name among those collections, the caller's own first;
several readable collections of that name, none the caller's own, is a 409 ``conflict``
listing their ids. A name the caller cannot read is 404, exactly like an unknown id.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest

from parley.container import Container
from tests.conftest import bearer, example_files, make_user
from tests.helpers import wait_for_job

NAME = "Team Handbook"
PATH = f"/v1/collections/{quote(NAME)}"


class Caller:
    """Requests with one user's key; the shared client stays the admin's."""

    def __init__(self, client: httpx.AsyncClient, key: str) -> None:
        self.c = client
        self.h = bearer(key)

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        return await self.c.get(url, headers=self.h, **kw)

    async def post(self, url: str, **kw: Any) -> httpx.Response:
        return await self.c.post(url, headers=self.h, **kw)

    async def delete(self, url: str) -> httpx.Response:
        return await self.c.delete(url, headers=self.h)

    async def create(self, name: str) -> str:
        r = await self.post("/v1/collections", json={"name": name})
        assert r.status_code == 201, r.text
        return str(r.json()["id"])


async def member(client: httpx.AsyncClient, container: Container, email: str) -> Caller:
    """A member with its own key."""
    _, key = await make_user(container, email)
    return Caller(client, key)


async def upload(who: Caller, ref: str, *files: str) -> dict[str, Any]:
    """Upload to a collection by reference and wait for the job."""
    r = await who.post(f"/v1/collections/{quote(ref)}/documents", files=example_files(*files))
    assert r.status_code == 202, r.text
    job = await wait_for_job(who.c, r.json()["job_id"])
    assert job["status"] == "succeeded", job
    return job


def assert_problem(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["code"] == code, body
    return body


async def test_every_route_accepts_a_name(client: httpx.AsyncClient, container: Container) -> None:
    alice = await member(client, container, "alice@example.com")
    bob_id, _ = await make_user(container, "bob@example.com")
    cid = await alice.create(NAME)

    # Upload by name lands in the collection; get and list documents by name.
    job = await upload(alice, NAME, "quickstart.txt")
    assert job["collection_id"] == cid
    got = await alice.get(PATH)
    assert got.status_code == 200 and got.json()["id"] == cid and got.json()["documents"] == 1
    docs = await alice.get(f"{PATH}/documents")
    assert [d["collection_id"] for d in docs.json()["items"]] == [cid]

    # Search by name (the reported bug) and by id answer the same.
    query = {"query": "How do I get started?", "top_k": 3}
    by_name = await alice.post("/v1/search", json={**query, "collection_ids": [NAME]})
    assert by_name.status_code == 200, by_name.text
    by_id = await alice.post("/v1/search", json={**query, "collection_ids": [cid]})
    assert by_name.json() == by_id.json() and by_name.json()["results"]
    # Sessions store the id, whatever the caller named; a name and its id count once.
    session = await alice.post("/v1/sessions", json={"collection_ids": [NAME, cid]})
    assert session.status_code == 201 and session.json()["collection_ids"] == [cid]

    # Grants by name; the audit log records the id, not the name the caller typed.
    shared = await alice.post(f"{PATH}/grants", json={"user_id": bob_id, "permission": "read"})
    assert shared.status_code == 201 and shared.json()["collection_id"] == cid
    assert [g["user_id"] for g in (await alice.get(f"{PATH}/grants")).json()["items"]] == [bob_id]
    assert (await alice.delete(f"{PATH}/grants/{bob_id}")).status_code == 204
    assert (await alice.delete(PATH)).status_code == 204
    assert_problem(await alice.get(f"/v1/collections/{cid}"), 404, "not_found")
    audit = (await client.get("/v1/admin/audit")).json()["items"]
    collection_events = [e for e in audit if e["action"].startswith("collection.")]
    assert len(collection_events) == 3 and {e["target_id"] for e in collection_events} == {cid}


async def test_a_name_you_cannot_read_is_not_found(
    client: httpx.AsyncClient, container: Container
) -> None:
    alice = await member(client, container, "alice@example.com")
    bob = await member(client, container, "bob@example.com")
    await alice.create(NAME)
    await upload(alice, NAME, "warranty.md")

    unknown = await bob.get("/v1/collections/no-such-name")
    for r in (
        await bob.get(PATH),
        await bob.get(f"{PATH}/documents"),
        await bob.get(f"{PATH}/grants"),
        await bob.post(f"{PATH}/documents", files=example_files("models.csv")),
        await bob.post("/v1/search", json={"query": "warranty", "collection_ids": [NAME]}),
        await bob.post("/v1/sessions", json={"collection_ids": [NAME]}),
        await bob.delete(PATH),
    ):
        body = assert_problem(r, 404, "not_found")
        # Indistinguishable from a name that does not exist at all.
        assert body["detail"] == f"collection {NAME!r} not found"
        assert {k: body[k] for k in ("type", "title", "status")} == {
            k: unknown.json()[k] for k in ("type", "title", "status")
        }
    assert unknown.json()["detail"] == "collection 'no-such-name' not found"
    # Alice's collection is untouched; Bob's own collection of that name is his alone.
    assert (await alice.get(PATH)).json()["documents"] == 1
    bob_cid = await bob.create(NAME)
    assert (await bob.get(PATH)).json()["id"] == bob_cid


async def test_a_read_grant_resolves_the_name_but_does_not_allow_writes(
    client: httpx.AsyncClient, container: Container
) -> None:
    alice = await member(client, container, "alice@example.com")
    bob_id, bob_key = await make_user(container, "bob@example.com")
    bob = Caller(client, bob_key)
    cid = await alice.create(NAME)
    await upload(alice, NAME, "warranty.md")
    r = await alice.post(f"{PATH}/grants", json={"user_id": bob_id, "permission": "read"})
    assert r.status_code == 201, r.text

    assert (await bob.get(PATH)).json()["id"] == cid
    search = await bob.post("/v1/search", json={"query": "warranty", "collection_ids": [NAME]})
    assert search.status_code == 200 and search.json()["results"]
    # Resolution finds it; the use case then refuses, exactly as it would by id.
    for ref in (NAME, cid):
        path = f"/v1/collections/{quote(ref)}"
        upload_r = await bob.post(f"{path}/documents", files=example_files("models.csv"))
        assert_problem(upload_r, 404, "not_found")
        assert_problem(await bob.delete(path), 404, "not_found")


async def test_ambiguous_names(client: httpx.AsyncClient, container: Container) -> None:
    alice = await member(client, container, "alice@example.com")
    carol = await member(client, container, "carol@example.com")
    bob_id, bob_key = await make_user(container, "bob@example.com")
    bob = Caller(client, bob_key)
    alice_cid, carol_cid = await alice.create(NAME), await carol.create(NAME)
    for owner in (alice, carol):
        r = await owner.post(f"{PATH}/grants", json={"user_id": bob_id, "permission": "read"})
        assert r.status_code == 201, r.text

    # Bob can read two collections of that name and owns neither: 409 naming both ids.
    for r in (
        await bob.get(PATH),
        await bob.post("/v1/search", json={"query": "x", "collection_ids": [NAME]}),
        await bob.post("/v1/sessions", json={"collection_ids": [NAME]}),
    ):
        body = assert_problem(r, 409, "conflict")
        assert body["candidates"] == sorted([alice_cid, carol_cid])
        assert alice_cid in body["detail"] and carol_cid in body["detail"]
    # Ids still work, and each owner's name means their own collection.
    assert (await bob.get(f"/v1/collections/{alice_cid}")).status_code == 200
    assert (await alice.get(PATH)).json()["id"] == alice_cid
    assert (await carol.get(PATH)).json()["id"] == carol_cid
    # Once Bob has a collection of that name, his own wins over those shared with him.
    bob_cid = await bob.create(NAME)
    assert (await bob.get(PATH)).json()["id"] == bob_cid
    session = await bob.post("/v1/sessions", json={"collection_ids": [NAME, carol_cid]})
    assert session.json()["collection_ids"] == [bob_cid, carol_cid]
    # An admin sees every tenant's collection of that name and owns none of them.
    body = assert_problem(await client.get(PATH), 409, "conflict")
    assert body["candidates"] == sorted([alice_cid, bob_cid, carol_cid])


async def test_an_exact_id_wins_over_a_name(
    client: httpx.AsyncClient, container: Container
) -> None:
    alice = await member(client, container, "alice@example.com")
    bob = await member(client, container, "bob@example.com")
    target = await alice.create("target")
    # A collection whose *name* is another collection's id.
    impostor = await alice.create(target)
    assert (await alice.get(f"/v1/collections/{target}")).json()["id"] == target
    # For a caller who cannot read the collection with that id, the id is unknown, so the
    # reference is a name: their own collection of that name.
    own = await bob.create(target)
    assert (await bob.get(f"/v1/collections/{target}")).json()["id"] == own
    assert impostor not in (target, own)


@pytest.mark.parametrize("ref", ["a/b", "..", "nul\x00name", " " * 3])
async def test_odd_references_are_plain_not_found(client: httpx.AsyncClient, ref: str) -> None:
    r = await client.post("/v1/search", json={"query": "x", "collection_ids": [ref]})
    assert_problem(r, 404, "not_found")
