"""Documents are keyed by their relative path: same-named files in different folders coexist.

Decided here: a traversal attempt is normalised, never refused (the source is only a key in
the database, never a file path on the server). ``..`` is resolved while it stays inside
the upload (``a/./b/../c.txt`` → ``a/c.txt``); a name climbing above it keeps only its file
name (``../../etc/passwd.txt`` → ``passwd.txt``); a leading ``/`` or drive letter goes.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.helpers import wait_for_job

ALPHA = b"The alpha module installs with the alpha tool and needs a warm kettle."
BETA = b"The beta module installs with the beta tool and needs a cold kettle."


async def _collection(client: httpx.AsyncClient, name: str = "paths") -> str:
    r = await client.post("/v1/collections", json={"name": name})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _upload(client: httpx.AsyncClient, cid: str, *files: tuple[str, bytes]) -> dict[str, Any]:
    r = await client.post(
        f"/v1/collections/{cid}/documents",
        files=[("files", (name, data, "text/markdown")) for name, data in files],
    )
    assert r.status_code == 202, r.text
    return await wait_for_job(client, r.json()["job_id"])


async def _sources(client: httpx.AsyncClient, cid: str) -> dict[str, dict[str, Any]]:
    docs = (await client.get(f"/v1/collections/{cid}/documents?limit=200")).json()["items"]
    return {d["source"]: d for d in docs}


async def test_same_named_files_in_two_folders_are_two_documents(
    client: httpx.AsyncClient,
) -> None:
    cid = await _collection(client)
    job = await _upload(client, cid, ("a/README.md", ALPHA), ("b/README.md", BETA))
    assert job["status"] == "succeeded", job
    assert sorted(i["filename"] for i in job["items"]) == ["a/README.md", "b/README.md"]
    docs = await _sources(client, cid)
    assert set(docs) == {"a/README.md", "b/README.md"}
    assert docs["a/README.md"]["id"] != docs["b/README.md"]["id"]

    # Citations show the path: in search results and in a chat answer's sources.
    hits = (
        await client.post("/v1/search", json={"query": "beta tool", "collection_ids": [cid]})
    ).json()["results"]
    assert hits[0]["source"] == "b/README.md"
    sid = (await client.post("/v1/sessions", json={"collection_ids": [cid]})).json()["id"]
    answer = await client.post(
        f"/v1/sessions/{sid}/messages", json={"content": "How does the beta module install?"}
    )
    assert answer.status_code == 201, answer.text
    assert "b/README.md" in {s["source"] for s in answer.json()["sources"]}


async def test_reuploading_a_path_is_idempotent_and_a_change_replaces_only_it(
    client: httpx.AsyncClient,
) -> None:
    cid = await _collection(client)
    await _upload(client, cid, ("a/README.md", ALPHA), ("b/README.md", BETA))
    before = await _sources(client, cid)
    again = await _upload(client, cid, ("a/README.md", ALPHA), ("b/README.md", BETA))
    assert {i["status"] for i in again["items"]} == {"skipped"}
    changed = await _upload(client, cid, ("b/README.md", BETA + b" Now also a lid."))
    assert [i["status"] for i in changed["items"]] == ["succeeded"]
    after = await _sources(client, cid)
    assert set(after) == {"a/README.md", "b/README.md"}
    assert after["b/README.md"]["id"] == before["b/README.md"]["id"]
    assert after["b/README.md"]["content_hash"] != before["b/README.md"]["content_hash"]
    assert after["a/README.md"] == before["a/README.md"]


async def test_base_name_documents_are_still_found_by_their_name(
    client: httpx.AsyncClient,
) -> None:
    # Rows stored before paths were kept hold a base name: uploading that name finds them.
    cid = await _collection(client)
    await _upload(client, cid, ("README.md", ALPHA))
    legacy = (await _sources(client, cid))["README.md"]
    again = await _upload(client, cid, ("README.md", ALPHA))
    assert [(i["status"], i["document_id"]) for i in again["items"]] == [("skipped", legacy["id"])]
    # A file of the same name in a folder is another document; the old one is untouched.
    await _upload(client, cid, ("docs/README.md", BETA))
    docs = await _sources(client, cid)
    assert set(docs) == {"README.md", "docs/README.md"}
    assert docs["README.md"]["content_hash"] == legacy["content_hash"]


async def test_traversal_attempts_are_normalised(client: httpx.AsyncClient) -> None:
    cid = await _collection(client)
    names = {
        "../../etc/passwd.txt": "passwd.txt",
        "/abs/x.txt": "abs/x.txt",
        "a/./b/../c.txt": "a/c.txt",
        "..\\..\\win\\boot.txt": "boot.txt",
        "docs\\guide\\intro.txt": "docs/guide/intro.txt",
    }
    job = await _upload(client, cid, *((n, f"file {i} text".encode()) for i, n in enumerate(names)))
    assert sorted(i["filename"] for i in job["items"]) == sorted(names.values())
    assert set(await _sources(client, cid)) == set(names.values())
    # A full Windows path: the multipart parser already keeps only its last part.
    drive = await _upload(client, cid, ("C:\\x\\y.txt", b"drive letter"))
    assert drive["items"][0]["filename"] == "y.txt"


async def test_two_names_cleaning_to_one_path_are_refused(client: httpx.AsyncClient) -> None:
    cid = await _collection(client)
    r = await client.post(
        f"/v1/collections/{cid}/documents",
        files=[("files", ("a/./x.md", b"one")), ("files", ("/a/x.md", b"two"))],
    )
    assert r.status_code == 422 and r.json()["code"] == "invalid_input"
    assert "a/x.md appears twice" in r.json()["detail"]


async def test_spoofing_characters_are_removed_from_file_names(
    client: httpx.AsyncClient,
) -> None:
    cid = await _collection(client)
    job = await _upload(
        client, cid, ("invoice\u202efdp.exe.txt", b"invoice"), ("r\u200bep\u2066/o.md", b"x")
    )
    assert sorted(i["filename"] for i in job["items"]) == ["invoicefdp.exe.txt", "rep/o.md"]
    assert set(await _sources(client, cid)) == {"invoicefdp.exe.txt", "rep/o.md"}


async def test_collection_names_with_hidden_characters_are_refused(
    client: httpx.AsyncClient,
) -> None:
    for name in ("evil\u202egnp.exe", "Fin\u200bance", "tab\there"):
        r = await client.post("/v1/collections", json={"name": name})
        assert r.status_code == 422, (name, r.text)
        body = r.json()
        assert body["code"] == "invalid_input" and "U+" in body["detail"]
        assert name not in body["detail"]  # the refused name is not echoed back
    ok = await client.post("/v1/collections", json={"name": "  ünïcødé 🦄  "})
    assert ok.status_code == 201 and ok.json()["name"] == "ünïcødé 🦄"
