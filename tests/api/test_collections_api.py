"""Collections, uploads, documents and jobs over HTTP."""

from __future__ import annotations

import io
import json
import zipfile

import httpx

from tests.conftest import DOCS, example_files
from tests.helpers import make_collection, wait_for_job

PROBLEM = "application/problem+json"


async def test_create_list_get_delete_collection(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/collections", json={"name": "handbook"})
    assert created.status_code == 201
    body = created.json()
    assert body["name"] == "handbook" and body["documents"] == 0 and body["id"]
    listed = (await client.get("/v1/collections")).json()
    assert [c["id"] for c in listed["items"]] == [body["id"]]
    got = await client.get(f"/v1/collections/{body['id']}")
    assert got.status_code == 200 and got.json()["name"] == "handbook"
    assert (await client.delete(f"/v1/collections/{body['id']}")).status_code == 204
    missing = await client.get(f"/v1/collections/{body['id']}")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM
    assert missing.json()["code"] == "not_found"


async def test_duplicate_collection_name_conflicts(client: httpx.AsyncClient) -> None:
    assert (await client.post("/v1/collections", json={"name": "a"})).status_code == 201
    dup = await client.post("/v1/collections", json={"name": "a"})
    assert dup.status_code == 409 and dup.json()["code"] == "conflict"


async def test_collection_pagination(client: httpx.AsyncClient) -> None:
    for i in range(5):
        await client.post("/v1/collections", json={"name": f"c{i}"})
    first = (await client.get("/v1/collections?limit=2")).json()
    second = (await client.get(f"/v1/collections?limit=2&cursor={first['next_cursor']}")).json()
    third = (await client.get(f"/v1/collections?limit=2&cursor={second['next_cursor']}")).json()
    names = [c["name"] for page in (first, second, third) for c in page["items"]]
    assert names == [f"c{i}" for i in range(5)]
    assert third["next_cursor"] is None
    bad = await client.get("/v1/collections?cursor=%%%garbage")
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_input"


async def test_upload_ingests_every_format(client: httpx.AsyncClient) -> None:
    cid = await make_collection(client, "all")
    docs = (await client.get(f"/v1/collections/{cid}/documents")).json()["items"]
    by_source = {d["source"]: d for d in docs}
    assert set(by_source) == {p.name for p in DOCS.iterdir()}
    assert all(d["status"] == "ready" and d["chunk_count"] > 0 for d in docs)
    assert by_source["service-manual.pdf"]["mime_type"] == "application/pdf"
    collection = (await client.get(f"/v1/collections/{cid}")).json()
    assert collection["documents"] == len(docs)
    assert collection["chunks"] == sum(d["chunk_count"] for d in docs)


async def test_job_reports_progress_and_items(client: httpx.AsyncClient) -> None:
    cid = (await client.post("/v1/collections", json={"name": "j"})).json()["id"]
    upload = await client.post(
        f"/v1/collections/{cid}/documents", files=example_files("warranty.md", "faq.json")
    )
    assert upload.status_code == 202
    job = await wait_for_job(client, upload.json()["job_id"])
    assert job["status"] == "succeeded"
    assert job["progress"]["total"] == 2 and job["progress"]["processed"] == 2
    assert job["progress"]["percent"] == 100.0
    assert {i["filename"] for i in job["items"]} == {"warranty.md", "faq.json"}
    assert all(i["chunks"] > 0 and i["document_id"] for i in job["items"])


async def test_reingesting_unchanged_file_is_a_no_op(client: httpx.AsyncClient) -> None:
    cid = await make_collection(client, "idem", "warranty.md")
    before = (await client.get(f"/v1/collections/{cid}/documents")).json()["items"][0]
    again = await client.post(
        f"/v1/collections/{cid}/documents", files=example_files("warranty.md")
    )
    job = await wait_for_job(client, again.json()["job_id"])
    assert job["progress"]["skipped"] == 1 and job["progress"]["chunks"] == 0
    after = (await client.get(f"/v1/collections/{cid}/documents")).json()["items"]
    assert len(after) == 1 and after[0]["id"] == before["id"]
    assert after[0]["updated_at"] == before["updated_at"]


async def test_changed_file_replaces_its_chunks(client: httpx.AsyncClient) -> None:
    cid = (await client.post("/v1/collections", json={"name": "chg"})).json()["id"]
    v1 = b"# Notes\n\nThe ferry leaves at nine from pier four."
    v2 = b"# Notes\n\nThe ferry now leaves at eleven from pier seven."
    for content in (v1, v2):
        r = await client.post(
            f"/v1/collections/{cid}/documents", files=[("files", ("notes.md", content))]
        )
        await wait_for_job(client, r.json()["job_id"])
    docs = (await client.get(f"/v1/collections/{cid}/documents")).json()["items"]
    assert len(docs) == 1
    hits = (
        await client.post("/v1/search", json={"query": "ferry pier", "collection_ids": [cid]})
    ).json()["results"]
    texts = " ".join(h["text"] for h in hits)
    assert "eleven" in texts and "nine" not in texts


async def test_delete_document_removes_it_from_search(client: httpx.AsyncClient) -> None:
    cid = await make_collection(client, "del", "warranty.md", "faq.json")
    docs = (await client.get(f"/v1/collections/{cid}/documents")).json()["items"]
    warranty = next(d for d in docs if d["source"] == "warranty.md")
    query = {"query": "transfer the warranty fee", "collection_ids": [cid], "top_k": 20}
    hits = (await client.post("/v1/search", json=query)).json()["results"]
    assert any(h["document_id"] == warranty["id"] for h in hits)
    assert (await client.delete(f"/v1/documents/{warranty['id']}")).status_code == 204
    assert (await client.get(f"/v1/documents/{warranty['id']}")).status_code == 404
    hits = (await client.post("/v1/search", json=query)).json()["results"]
    assert hits and all(h["document_id"] != warranty["id"] for h in hits)


async def test_failed_parse_marks_document_failed_and_continues(client: httpx.AsyncClient) -> None:
    cid = (await client.post("/v1/collections", json={"name": "bad"})).json()["id"]
    broken_pdf = b"%PDF-1.7\n" + b"\x00garbage" * 50
    files = [("files", ("broken.pdf", broken_pdf)), *example_files("quickstart.txt")]
    upload = await client.post(f"/v1/collections/{cid}/documents", files=files)
    assert upload.status_code == 202
    job = await wait_for_job(client, upload.json()["job_id"])
    assert job["status"] == "succeeded"
    assert job["progress"]["failed"] == 1 and job["progress"]["succeeded"] == 1
    docs = {
        d["source"]: d
        for d in (await client.get(f"/v1/collections/{cid}/documents")).json()["items"]
    }
    assert docs["broken.pdf"]["status"] == "failed" and docs["broken.pdf"]["error"]
    assert docs["quickstart.txt"]["status"] == "ready"


async def test_unsupported_or_misdeclared_upload_is_415_and_leaves_nothing(
    client: httpx.AsyncClient,
) -> None:
    cid = (await client.post("/v1/collections", json={"name": "types"})).json()["id"]
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64
    zip_bytes = io.BytesIO()
    with zipfile.ZipFile(zip_bytes, "w") as zf:
        zf.writestr("a.txt", "hello")
    cases = [
        [("files", ("image.png", png, "image/png"))],
        [("files", ("notes.txt", png, "text/plain"))],
        [("files", ("report.pdf", zip_bytes.getvalue(), "application/pdf"))],
        [
            *example_files("quickstart.txt"),
            ("files", ("x.exe", b"MZ\x90\x00", "application/x-msdownload")),
        ],
    ]
    for files in cases:
        r = await client.post(f"/v1/collections/{cid}/documents", files=files)
        assert r.status_code == 415, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "unsupported_media_type"
    docs = (await client.get(f"/v1/collections/{cid}/documents")).json()["items"]
    assert docs == []


async def test_oversized_upload_is_413(client: httpx.AsyncClient, container: object) -> None:
    from parley.container import Container

    assert isinstance(container, Container)
    container.settings.limits.max_upload_bytes = 1000
    cid = (await client.post("/v1/collections", json={"name": "big"})).json()["id"]
    r = await client.post(
        f"/v1/collections/{cid}/documents", files=[("files", ("big.txt", b"word " * 400))]
    )
    assert r.status_code == 413 and r.json()["code"] == "payload_too_large"


async def test_upload_to_unknown_collection_is_404(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/collections/nope/documents", files=example_files("faq.json"))
    assert r.status_code == 404 and r.json()["code"] == "not_found"


async def test_upload_without_files_is_422(client: httpx.AsyncClient) -> None:
    cid = (await client.post("/v1/collections", json={"name": "empty"})).json()["id"]
    r = await client.post(f"/v1/collections/{cid}/documents", data={"x": "1"})
    assert r.status_code == 422 and r.json()["code"] == "invalid_input"
    empty = await client.post(f"/v1/collections/{cid}/documents", files=[("files", ("e.txt", b""))])
    assert empty.status_code == 422


async def test_filenames_are_sanitized(client: httpx.AsyncClient) -> None:
    cid = (await client.post("/v1/collections", json={"name": "names"})).json()["id"]
    r = await client.post(
        f"/v1/collections/{cid}/documents",
        files=[("files", ("../../etc/passwd.txt", b"plain words here"))],
    )
    await wait_for_job(client, r.json()["job_id"])
    docs = (await client.get(f"/v1/collections/{cid}/documents")).json()["items"]
    assert docs[0]["source"] == "passwd.txt"


async def test_unknown_job_and_document_are_404(client: httpx.AsyncClient) -> None:
    for path in ("/v1/jobs/x", "/v1/documents/x"):
        r = await client.get(path)
        assert r.status_code == 404 and r.json()["code"] == "not_found"
    assert (await client.delete("/v1/documents/x")).status_code == 404


async def test_metadata_is_stored_and_filterable(client: httpx.AsyncClient) -> None:
    cid = (await client.post("/v1/collections", json={"name": "meta"})).json()["id"]
    for team, text in (
        ("blue", b"Blue team owns the ferry schedule."),
        ("red", b"Red team owns the ferry tickets."),
    ):
        r = await client.post(
            f"/v1/collections/{cid}/documents",
            files=[("files", (f"{team}.txt", text))],
            data={"metadata": f'{{"team": "{team}"}}'},
        )
        await wait_for_job(client, r.json()["job_id"])
    body = {"query": "ferry", "collection_ids": [cid], "filters": {"team": "red"}}
    hits = (await client.post("/v1/search", json=body)).json()["results"]
    assert [h["source"] for h in hits] == ["red.txt"]
    bad = await client.post(
        f"/v1/collections/{cid}/documents",
        files=[("files", ("x.txt", b"x y z"))],
        data={"metadata": "[1,2]"},
    )
    assert bad.status_code == 422


async def test_crafted_cursors_are_422_not_500(client: httpx.AsyncClient) -> None:
    import base64
    import json

    def cursor(value: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    await client.post("/v1/collections", json={"name": "c"})
    for bad in (["2020-01-01T00:00:00", {"a": 1}], ["not a date", "x"], [1, 2, 3]):
        r = await client.get(f"/v1/collections?cursor={cursor(bad)}")
        assert r.status_code == 422, (bad, r.text)
    sid = (
        await client.post(
            "/v1/sessions",
            json={
                "collection_ids": [(await client.get("/v1/collections")).json()["items"][0]["id"]]
            },
        )
    ).json()["id"]
    for bad in ([2**70], [True], ["7"]):
        r = await client.get(f"/v1/sessions/{sid}/messages?cursor={cursor(bad)}")
        assert r.status_code == 422, (bad, r.text)


async def test_metadata_filters_tolerate_mixed_value_types(client: httpx.AsyncClient) -> None:
    cid = (await client.post("/v1/collections", json={"name": "mixed"})).json()["id"]
    for name, version in (("a.txt", "v2"), ("b.txt", "3")):
        r = await client.post(
            f"/v1/collections/{cid}/documents",
            files=[("files", (name, f"ferry timetable {name}".encode()))],
            data={"metadata": json.dumps({"version": version})},
        )
        await wait_for_job(client, r.json()["job_id"])
    body = {"query": "ferry", "collection_ids": [cid], "filters": {"version": 3}}
    r = await client.post("/v1/search", json=body)
    assert r.status_code == 200, r.text  # never a 500 because another chunk holds "v2"
