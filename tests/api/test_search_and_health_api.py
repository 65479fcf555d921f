"""Search, health endpoints, request ids and generic error shapes."""

from __future__ import annotations

import httpx

from tests.helpers import make_collection


async def test_search_finds_the_passage_with_ranks(client: httpx.AsyncClient) -> None:
    cid = await make_collection(client, "kb")
    r = await client.post(
        "/v1/search",
        json={"query": "stem faceplate bolts torque", "collection_ids": [cid], "top_k": 3},
    )
    assert r.status_code == 200
    results = r.json()["results"]
    assert 1 <= len(results) <= 3
    top = results[0]
    assert top["source"] == "service-manual.pdf" and top["page"] == 3
    assert "5 Nm" in top["text"]
    assert top["keyword_rank"] == 1
    scores = [h["score"] for h in results]
    assert scores == sorted(scores, reverse=True)


async def test_search_filters_by_document_fields(client: httpx.AsyncClient) -> None:
    cid = await make_collection(client, "kb")
    body = {
        "query": "battery",
        "collection_ids": [cid],
        "top_k": 20,
        "filters": {"source": "faq.json"},
    }
    results = (await client.post("/v1/search", json=body)).json()["results"]
    assert results and {h["source"] for h in results} == {"faq.json"}
    body["filters"] = {"page": 2}
    results = (await client.post("/v1/search", json=body)).json()["results"]
    assert results and {h["page"] for h in results} == {2}


async def test_search_validation(client: httpx.AsyncClient) -> None:
    cid = (await client.post("/v1/collections", json={"name": "x"})).json()["id"]
    cases = [
        ({"query": "", "collection_ids": [cid]}, 422),
        ({"query": "q", "collection_ids": []}, 422),
        ({"query": "q", "collection_ids": [cid], "top_k": 0}, 422),
        ({"query": "q", "collection_ids": [cid], "top_k": 51}, 422),
        ({"query": "q" * 2001, "collection_ids": [cid]}, 422),
        ({"query": "q", "collection_ids": [cid], "filters": {"bad key": 1}}, 422),
        ({"query": "q", "collection_ids": [cid], "filters": {"k": {"nested": 1}}}, 422),
        ({"query": "q", "collection_ids": ["missing"]}, 404),
    ]
    for body, status in cases:
        r = await client.post("/v1/search", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert {"type", "title", "status", "detail", "code"} <= set(r.json())


async def test_fts_syntax_in_queries_is_harmless(client: httpx.AsyncClient) -> None:
    cid = await make_collection(client, "kb", "faq.json")
    for query in (
        '"unbalanced',
        "NEAR(a b)",
        "col:value*",
        "AND OR NOT",
        "'; DROP TABLE chunks; --",
        "ü∂ƒ©˙∆",
    ):
        r = await client.post("/v1/search", json={"query": query, "collection_ids": [cid]})
        assert r.status_code == 200, (query, r.text)
    still = await client.post("/v1/search", json={"query": "waterproof", "collection_ids": [cid]})
    assert still.json()["results"]


async def test_empty_collection_search_returns_nothing(client: httpx.AsyncClient) -> None:
    cid = (await client.post("/v1/collections", json={"name": "empty"})).json()["id"]
    r = await client.post("/v1/search", json={"query": "anything", "collection_ids": [cid]})
    assert r.status_code == 200 and r.json() == {"results": []}


async def test_livez_readyz_and_request_id(client: httpx.AsyncClient) -> None:
    live = await client.get("/livez")
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    ready = await client.get("/readyz")
    body = ready.json()
    assert ready.status_code == 200 and body["status"] == "ok"
    assert body["components"]["database"]["status"] == "ok"
    assert len(live.headers["x-request-id"]) == 32
    echoed = await client.get("/livez", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    forged = await client.get("/livez", headers={"X-Request-ID": "bad id\nwith newline"})
    assert forged.headers["x-request-id"] != "bad id\nwith newline"


async def test_unknown_route_and_method_are_problem_json(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = await client.put("/v1/collections")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"


async def test_web_page_is_served(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 200 and "Parley" in r.text
