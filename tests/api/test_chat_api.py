"""Sessions and chat turns over HTTP, streamed and not."""

from __future__ import annotations

import json
from typing import Any

import httpx

from parley.container import Container
from parley.providers.llm.fake import FakeLLM
from tests.helpers import make_collection


def parse_sse(text: str) -> list[tuple[str, dict[str, Any]]]:
    """Split an SSE body into (event, data) pairs."""
    events = []
    for frame in text.strip().split("\n\n"):
        lines = dict(line.split(": ", 1) for line in frame.splitlines())
        events.append((lines["event"], json.loads(lines["data"])))
    return events


async def new_session(client: httpx.AsyncClient, *collection_ids: str) -> str:
    r = await client.post("/v1/sessions", json={"collection_ids": list(collection_ids)})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_turn_returns_cited_answer_and_persists_both_messages(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    cid = await make_collection(client, "kb")
    sid = await new_session(client, cid)
    r = await client.post(
        f"/v1/sessions/{sid}/messages",
        json={"content": "How many days do I have to return a bike?"},
    )
    assert r.status_code == 201, r.text
    answer = r.json()
    assert answer["role"] == "assistant" and "[1]" in answer["content"]
    assert answer["sources"][0]["index"] == 1
    first = answer["sources"][0]
    assert {"document_id", "title", "source", "snippet", "score", "page", "section"} <= set(first)
    assert (
        answer["usage"]["total_tokens"]
        == (answer["usage"]["input_tokens"] + answer["usage"]["output_tokens"])
        > 0
    )
    # The model was given the numbered sources that the answer cites.
    request = fake_llm.requests[-1]
    assert [s.chunk_id for s in request.sources] == [s["chunk_id"] for s in answer["sources"]]
    assert any(s["source"] == "returns-policy.docx" for s in answer["sources"])
    history = (await client.get(f"/v1/sessions/{sid}/messages")).json()["items"]
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert history[0]["content"] == "How many days do I have to return a bike?"
    assert history[1]["id"] == answer["id"] and history[1]["sources"] == answer["sources"]
    session = (await client.get(f"/v1/sessions/{sid}")).json()
    assert session["message_count"] == 2


async def test_streaming_turn_sends_tokens_then_done(client: httpx.AsyncClient) -> None:
    cid = await make_collection(client, "kb", "battery-care.html")
    sid = await new_session(client, cid)
    r = await client.post(
        f"/v1/sessions/{sid}/messages?stream=true",
        json={"content": "At what temperature should I store the battery?"},
    )
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(r.text)
    kinds = [e for e, _ in events]
    assert kinds[0] == "sources" and kinds[-1] == "done"
    assert kinds.count("token") >= 2
    streamed = "".join(d["text"] for e, d in events if e == "token")
    done = events[-1][1]
    assert done["content"] == streamed
    assert done["sources"] == events[0][1]["sources"] and done["usage"]["output_tokens"] > 0
    stored = (await client.get(f"/v1/sessions/{sid}/messages")).json()["items"]
    assert stored[-1]["content"] == streamed


async def test_accept_header_selects_streaming(client: httpx.AsyncClient) -> None:
    cid = await make_collection(client, "kb", "faq.json")
    sid = await new_session(client, cid)
    r = await client.post(
        f"/v1/sessions/{sid}/messages",
        json={"content": "Is the bike waterproof?"},
        headers={"Accept": "text/event-stream"},
    )
    assert r.headers["content-type"].startswith("text/event-stream")
    assert parse_sse(r.text)[-1][0] == "done"


async def test_history_is_given_to_the_model_and_followups_are_rewritten(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    cid = await make_collection(client, "kb")
    sid = await new_session(client, cid)
    await client.post(
        f"/v1/sessions/{sid}/messages", json={"content": "Tell me about the frame warranty"}
    )
    fake_llm.rewrite_reply = "How long is the frame warranty of a Lumen bike?"
    await client.post(f"/v1/sessions/{sid}/messages", json={"content": "and how long is it?"})
    rewrite, answer = fake_llm.requests[-2], fake_llm.requests[-1]
    assert not rewrite.sources and "and how long is it?" in rewrite.messages[-1].content
    roles = [m.role for m in answer.messages]
    assert roles[0] == "system" and roles.count("user") == 2 and roles.count("assistant") == 1
    assert answer.question == "and how long is it?"


async def test_message_pagination_oldest_first(client: httpx.AsyncClient) -> None:
    cid = await make_collection(client, "kb", "faq.json")
    sid = await new_session(client, cid)
    for i in range(3):
        await client.post(f"/v1/sessions/{sid}/messages", json={"content": f"question {i}"})
    page1 = (await client.get(f"/v1/sessions/{sid}/messages?limit=4")).json()
    page2 = (
        await client.get(f"/v1/sessions/{sid}/messages?limit=4&cursor={page1['next_cursor']}")
    ).json()
    contents = [m["content"] for m in page1["items"] + page2["items"] if m["role"] == "user"]
    assert contents == ["question 0", "question 1", "question 2"]
    assert len(page1["items"]) == 4 and len(page2["items"]) == 2 and page2["next_cursor"] is None


async def test_sessions_list_get_delete(client: httpx.AsyncClient) -> None:
    cid = (await client.post("/v1/collections", json={"name": "s"})).json()["id"]
    a = await new_session(client, cid)
    b = await new_session(client, cid)
    listed = [s["id"] for s in (await client.get("/v1/sessions")).json()["items"]]
    assert listed == [b, a]  # newest first
    assert (await client.delete(f"/v1/sessions/{a}")).status_code == 204
    assert (await client.get(f"/v1/sessions/{a}")).status_code == 404
    assert (await client.get(f"/v1/sessions/{a}/messages")).status_code == 404
    r = await client.post(f"/v1/sessions/{a}/messages", json={"content": "hi"})
    assert r.status_code == 404 and r.json()["code"] == "not_found"


async def test_bad_chat_input_is_422_and_stores_nothing(
    client: httpx.AsyncClient, container: Container
) -> None:
    cid = (await client.post("/v1/collections", json={"name": "v"})).json()["id"]
    sid = await new_session(client, cid)
    too_long = "x" * (container.settings.limits.max_message_chars + 1)
    for body in (
        {"content": ""},
        {"content": "   "},
        {"content": too_long},
        {"nope": 1},
        {"content": "ok", "top_k": 0},
    ):
        r = await client.post(f"/v1/sessions/{sid}/messages", json=body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["code"] == "invalid_input"
    bad_json = await client.post(
        f"/v1/sessions/{sid}/messages",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert bad_json.status_code == 422
    assert (await client.get(f"/v1/sessions/{sid}/messages")).json()["items"] == []


async def test_session_needs_existing_collections(client: httpx.AsyncClient) -> None:
    r = await client.post("/v1/sessions", json={"collection_ids": ["missing"]})
    assert r.status_code == 404
    r = await client.post("/v1/sessions", json={"collection_ids": []})
    assert r.status_code == 422


async def test_llm_failure_is_a_problem_that_keeps_the_question_for_a_retry(
    client: httpx.AsyncClient, fake_llm: FakeLLM
) -> None:
    from parley.errors import ProviderTimeout

    cid = await make_collection(client, "kb", "faq.json")
    sid = await new_session(client, cid)
    fake_llm.fail_with = ProviderTimeout("the model did not answer in time")
    r = await client.post(f"/v1/sessions/{sid}/messages", json={"content": "Is it waterproof?"})
    assert r.status_code == 504 and r.json()["code"] == "provider_timeout"
    first = r.json()["message_id"]
    streamed = await client.post(
        f"/v1/sessions/{sid}/messages?stream=true", json={"content": "Does it fold?"}
    )
    events = parse_sse(streamed.text)
    assert events[-1][0] == "error" and events[-1][1]["code"] == "provider_timeout"
    second = events[-1][1]["message_id"]
    stored = (await client.get(f"/v1/sessions/{sid}/messages")).json()["items"]
    # The questions are kept, marked failed; no answer (let alone an empty one) is stored.
    assert [(m["id"], m["role"], m["status"], m["error"]) for m in stored] == [
        (first, "user", "failed", "provider_timeout"),
        (second, "user", "failed", "provider_timeout"),
    ]
    fake_llm.fail_with = None
    retried = await client.post(f"/v1/sessions/{sid}/messages/{first}/retry")
    assert retried.status_code == 201, retried.text
    assert retried.json()["reply_to"] == first and retried.json()["content"]
    again = await client.post(f"/v1/sessions/{sid}/messages/{first}/retry")
    assert again.status_code == 409 and again.json()["code"] == "conflict"
    stored = (await client.get(f"/v1/sessions/{sid}/messages")).json()["items"]
    assert [(m["role"], m.get("status"), m.get("reply_to")) for m in stored] == [
        ("user", "answered", None),
        ("user", "failed", None),
        ("assistant", None, first),
    ]
    # The failed question is not history: the retried answer's prompt had only the first pair.
    fake_llm.requests.clear()
    await client.post(f"/v1/sessions/{sid}/messages/{second}/retry", json={"stream": False})
    answer_prompt = fake_llm.requests[-1].messages
    assert sum(m.role == "user" and "Is it waterproof?" in m.content for m in answer_prompt) == 1
    assert not any("Does it fold?" in m.content for m in answer_prompt[:-1])


async def test_retry_refuses_answers_strangers_and_unknown_messages(
    client: httpx.AsyncClient, container: Container
) -> None:
    from tests.conftest import bearer, make_user

    cid = await make_collection(client, "kb", "faq.json")
    sid = await new_session(client, cid)
    answer = (await client.post(f"/v1/sessions/{sid}/messages", json={"content": "Fold?"})).json()
    url = f"/v1/sessions/{sid}/messages"
    r = await client.post(f"{url}/{answer['id']}/retry")
    assert r.status_code == 422 and r.json()["code"] == "invalid_input"
    r = await client.post(f"{url}/{answer['reply_to']}/retry")
    assert r.status_code == 409
    assert (await client.post(f"{url}/999999/retry")).status_code == 404
    assert (await client.post(f"{url}/0/retry")).status_code == 422
    _, key = await make_user(container, "stranger@example.com")
    r = await client.post(f"{url}/{answer['reply_to']}/retry", headers=bearer(key))
    assert r.status_code == 404


async def test_chat_over_several_collections(client: httpx.AsyncClient) -> None:
    a = await make_collection(client, "a", "warranty.md")
    b = await make_collection(client, "b", "returns-policy.docx")
    sid = await new_session(client, a, b)
    r = await client.post(
        f"/v1/sessions/{sid}/messages",
        json={"content": "warranty transfer fee and the return restocking fee", "top_k": 10},
    )
    sources = {s["collection_id"] for s in r.json()["sources"]}
    assert sources == {a, b}


async def test_sessions_accept_collection_names(client: httpx.AsyncClient) -> None:
    cid = (await client.post("/v1/collections", json={"name": "by-name"})).json()["id"]
    r = await client.post("/v1/sessions", json={"collection_ids": ["by-name", cid]})
    assert r.status_code == 201 and r.json()["collection_ids"] == [cid]
