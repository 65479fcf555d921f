"""A real OpenAI-compatible server that misbehaves, and what Parley makes of it.

The server is a small HTTP/1.1 implementation on ``asyncio`` streams (127.0.0.1, a free
port), so it can do what a framework would not: answer 200 with a body that is not JSON,
stream nothing, drop the connection in the middle of a chunked stream, stall past any
timeout. Parley runs its real ``openai`` provider against it, on SQLite, and every turn
goes through the HTTP API, whole and streamed.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from parley.api.app import create_app
from parley.container import Container
from parley.errors import ProviderMalformedResponse
from parley.providers.embeddings.fake import FakeEmbedder
from parley.providers.tokenizers.approx import ApproxTokenCounter
from parley.settings import Settings
from tests.api.test_chat_api import parse_sse
from tests.conftest import TEST_SECURITY, bearer, make_user, per_request_state
from tests.helpers import make_collection

pytest.importorskip("openai")

TIMEOUT_S = 2.0
# Retries the default policy allows (``providers/llm/retries.py``): 1 + 2 attempts.
ATTEMPTS_ON_5XX = 3
ANSWER = ["The bike", " is waterproof", " to IPX4 [1]."]
SECURITY_HEADERS = ("x-content-type-options", "x-frame-options", "content-security-policy")


@dataclass
class Upstream:
    """A scriptable OpenAI-compatible server: ``mode`` says how ``/chat/completions``
    answers, ``embed_mode`` how ``/embeddings`` does; ``requests`` records every request."""

    mode: str = "ok"
    embed_mode: str = "ok"
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def attempts(self, path: str = "/v1/chat/completions") -> int:
        return sum(1 for seen, _ in self.requests if seen == path)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            while (request := await _read_request(reader)) is not None:
                path, body = request
                self.requests.append((path, body))
                if not await self._answer(path, body, writer):
                    break
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away (e.g. after its own timeout)
        finally:
            self._handlers.discard(task)
            writer.close()

    async def _answer(self, path: str, body: dict[str, Any], writer: asyncio.StreamWriter) -> bool:
        """Write the response; False when the connection must be dropped afterwards."""
        if path.endswith("/embeddings"):
            if self.embed_mode == "non_json":
                return await _send(writer, 200, "text/html", b"<html>proxy error</html>")
            vectors = [_vector(text) for text in body["input"]]
            return await _send_json(writer, 200, _embeddings(vectors))
        streaming = bool(body.get("stream"))
        mode = self.mode
        if mode == "slow":
            await asyncio.sleep(3600)  # until the client gives up and the test ends
        if mode == "rate_limited":
            error = {"error": {"message": "slow down", "type": "rate_limit"}}
            return await _send_json(writer, 429, error, headers={"Retry-After": "7"})
        if mode == "flaky":  # one 500, then good answers
            self.mode = mode = "ok"
            return await _send_json(writer, 500, {"error": {"message": "boom"}})
        if mode == "server_error":
            return await _send_json(writer, 500, {"error": {"message": "boom"}})
        if mode == "non_json_html":
            return await _send(writer, 200, "text/html", b"<html>502 Bad Gateway</html>")
        if mode == "non_json_body":
            return await _send(writer, 200, "application/json", b"upstream says {oops")
        if not streaming:
            if mode == "wrong_shape":
                return await _send_json(writer, 200, {"id": "x", "result": "hello"})
            text = "" if mode == "empty" else "".join(ANSWER)
            return await _send_json(writer, 200, _completion(text))
        if mode == "wrong_shape":
            return await _send_events(writer, [{"result": "hello"}, "[DONE]"])
        if mode == "empty":
            return await _send_events(writer, [_chunk(""), _chunk(None, "stop"), "[DONE]"])
        if mode == "cut":
            await _send_events(writer, [_chunk(p) for p in ANSWER[:2]], end=False)
            return False  # the connection closes without the final chunk nor [DONE]
        return await _send_events(
            writer, [*(_chunk(p) for p in ANSWER), _chunk(None, "stop"), _usage_chunk(), "[DONE]"]
        )


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, dict[str, Any]] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    path = lines[0].split(" ")[1]
    headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
    raw = await reader.readexactly(int(headers.get("content-length", "0")))
    return path, json.loads(raw) if raw else {}


async def _send(
    writer: asyncio.StreamWriter,
    status: int,
    content_type: str,
    body: bytes,
    headers: dict[str, str] | None = None,
) -> bool:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    writer.write(
        f"HTTP/1.1 {status} X\r\ncontent-type: {content_type}\r\n"
        f"content-length: {len(body)}\r\n{extra}\r\n".encode()
        + body
    )
    await writer.drain()
    return True


async def _send_json(
    writer: asyncio.StreamWriter, status: int, data: Any, headers: dict[str, str] | None = None
) -> bool:
    return await _send(writer, status, "application/json", json.dumps(data).encode(), headers)


async def _send_events(
    writer: asyncio.StreamWriter, events: list[Any], *, end: bool = True
) -> bool:
    """Server-sent events in a chunked body; without ``end``, no terminating chunk."""
    writer.write(
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    for event in events:
        data = event if isinstance(event, str) else json.dumps(event)
        frame = f"data: {data}\n\n".encode()
        writer.write(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
        await writer.drain()
        await asyncio.sleep(0.01)
    if end:
        writer.write(b"0\r\n\r\n")
        await writer.drain()
    return end


def _completion(text: str) -> dict[str, Any]:
    return {
        "id": "cmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "upstream-test",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 50, "completion_tokens": 9, "total_tokens": 59},
    }


def _chunk(text: str | None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if text is None else {"content": text}
    return {
        "id": "cmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "upstream-test",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _usage_chunk() -> dict[str, Any]:
    return _chunk(None) | {
        "choices": [],
        "usage": {"prompt_tokens": 50, "completion_tokens": 9, "total_tokens": 59},
    }


def _vector(text: str) -> list[float]:
    return [1.0 + (hash(word) % 7) for word in (text.split() + ["pad"] * 8)[:8]]


def _embeddings(vectors: list[list[float]]) -> dict[str, Any]:
    return {
        "object": "list",
        "model": "upstream-embed",
        "data": [
            {"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)
        ],
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }


# --- Parley in front of it ---------------------------------------------------------------------


@pytest.fixture
async def upstream() -> AsyncIterator[Upstream]:
    server = Upstream()
    await server.start()
    yield server
    await server.stop()


def _settings(tmp_path: Path, upstream: Upstream, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "embeddings": {"provider": "fake", "dimension": 64},
        "llm": {
            "provider": "openai",
            "model": "upstream-test",
            "base_url": upstream.base_url,
            "timeout_s": TIMEOUT_S,
            "connect_timeout_s": 1.0,
        },
        "chunking": {"tokenizer": "approx", "max_tokens": 120, "overlap_tokens": 20},
        "jobs": {"poll_interval_s": 0.05},
        "retrieval": {"index_sync_interval_s": 0.0},
        **TEST_SECURITY,
    }
    return Settings(_env_file=None, **(values | overrides))  # type: ignore[call-arg]


@pytest.fixture
async def parley(tmp_path: Path, upstream: Upstream) -> AsyncIterator[httpx.AsyncClient]:
    """Parley's HTTP API (admin key) with its real openai provider at ``upstream``."""
    settings = _settings(tmp_path, upstream)
    container = Container.build(
        settings, embedder=FakeEmbedder(dimension=64), token_counter=ApproxTokenCounter()
    )
    await container.prepare_database()
    try:
        async for client in _client(settings, container):
            yield client
    finally:
        await container.aclose()


async def _client(settings: Settings, container: Container) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, container=container)
    _, key = await make_user(container, "admin@example.com", role="admin")
    async with LifespanManager(per_request_state(app)) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://parley.test", headers=bearer(key)
        ) as client:
            yield client


async def _session(client: httpx.AsyncClient) -> str:
    cid = await make_collection(client, "kb", "faq.json")
    r = await client.post("/v1/sessions", json={"collection_ids": [cid]})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def _ask(
    client: httpx.AsyncClient, sid: str, content: str, *, stream: bool
) -> tuple[httpx.Response, dict[str, Any], list[str]]:
    """One turn: the response, its problem (body or final SSE error event), the tokens."""
    url = f"/v1/sessions/{sid}/messages" + ("?stream=true" if stream else "")
    response = await client.post(url, json={"content": content})
    assert response.headers.get("x-request-id")
    for name in SECURITY_HEADERS:
        assert response.headers.get(name), name
    if not stream:
        return response, response.json(), []
    assert response.status_code == 200
    events = parse_sse(response.text)
    assert events[0][0] == "sources"
    tokens = [data["text"] for event, data in events if event == "token"]
    return response, events[-1][1] | {"event": events[-1][0]}, tokens


async def _messages(client: httpx.AsyncClient, sid: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await client.get(f"/v1/sessions/{sid}/messages")).json()["items"]
    return items


FAULTS = [
    # (mode, HTTP status, problem code, attempts the upstream sees)
    ("non_json_html", 502, "provider_malformed_response", 1),
    ("non_json_body", 502, "provider_malformed_response", 1),
    ("wrong_shape", 502, "provider_malformed_response", 1),
    ("empty", 502, "provider_empty_response", 1),
    ("rate_limited", 503, "provider_rate_limited", 1),  # asks for 7 s: passed on, not waited
    ("server_error", 502, "provider_error", ATTEMPTS_ON_5XX),
]
STREAM_FAULTS = [*FAULTS, ("cut", 502, "provider_stream_cut", 1)]


@pytest.mark.parametrize(("mode", "status", "code", "attempts"), FAULTS)
async def test_a_whole_answer_fault_is_typed_and_the_question_is_kept_for_a_retry(
    parley: httpx.AsyncClient, upstream: Upstream, mode: str, status: int, code: str, attempts: int
) -> None:
    sid = await _session(parley)
    upstream.mode = mode
    response, problem, _ = await _ask(parley, sid, "Is the bike waterproof?", stream=False)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert problem["code"] == code and problem["status"] == status
    assert problem["request_id"] == response.headers["x-request-id"]
    assert upstream.base_url not in problem["detail"]  # the internal URL stays internal
    assert upstream.attempts() == attempts
    if mode == "rate_limited":
        assert response.headers["retry-after"] == "7"
    else:
        assert "retry-after" not in response.headers
    await _assert_kept_then_retried(parley, upstream, sid, problem["message_id"], code)


@pytest.mark.parametrize(("mode", "status", "code", "attempts"), STREAM_FAULTS)
async def test_a_streamed_fault_ends_with_an_error_event_and_the_question_is_kept(
    parley: httpx.AsyncClient, upstream: Upstream, mode: str, status: int, code: str, attempts: int
) -> None:
    sid = await _session(parley)
    upstream.mode = mode
    _, problem, tokens = await _ask(parley, sid, "Is the bike waterproof?", stream=True)
    assert problem["event"] == "error"
    assert problem["code"] == code and problem["status"] == status
    assert upstream.attempts() == attempts
    assert problem.get("retry_after") == (7 if mode == "rate_limited" else None)
    # A cut stream sent what it had; every other fault sent no text at all.
    assert tokens == (ANSWER[:2] if mode == "cut" else [])
    await _assert_kept_then_retried(parley, upstream, sid, problem["message_id"], code)


async def _assert_kept_then_retried(
    client: httpx.AsyncClient, upstream: Upstream, sid: str, message_id: int, code: str
) -> None:
    """The question is stored, failed, with no answer; once the server behaves, a retry
    answers it (streamed, then checked in the history)."""
    stored = await _messages(client, sid)
    assert [(m["id"], m["role"], m["status"], m["error"]) for m in stored] == [
        (message_id, "user", "failed", code)
    ]
    upstream.mode = "ok"
    r = await client.post(f"/v1/sessions/{sid}/messages/{message_id}/retry?stream=true")
    events = parse_sse(r.text)
    assert events[-1][0] == "done", events[-1]
    assert events[-1][1]["content"] == "".join(ANSWER)
    stored = await _messages(client, sid)
    assert [(m["role"], m.get("status"), m.get("reply_to")) for m in stored] == [
        ("user", "answered", None),
        ("assistant", None, message_id),
    ]
    assert all(m["content"].strip() for m in stored)  # nothing empty, ever


@pytest.mark.parametrize("stream", [False, True])
async def test_a_stalled_server_times_out_at_the_deadline_after_one_attempt(
    parley: httpx.AsyncClient, upstream: Upstream, stream: bool
) -> None:
    """``PARLEY_LLM__TIMEOUT_S`` bounds the whole call: a server that never answers gets one
    attempt (it used the whole budget), not one per retry, and no SDK retry on top."""
    sid = await _session(parley)
    upstream.mode = "slow"
    loop = asyncio.get_running_loop()
    started = loop.time()
    response, problem, _ = await _ask(parley, sid, "Is the bike waterproof?", stream=stream)
    elapsed = loop.time() - started
    assert TIMEOUT_S - 0.05 <= elapsed < TIMEOUT_S + 0.75, elapsed
    assert problem["code"] == "provider_timeout" and problem["status"] == 504
    if not stream:
        assert response.status_code == 504
    assert upstream.attempts() == 1
    stored = await _messages(client=parley, sid=sid)
    assert [(m["role"], m["status"]) for m in stored] == [("user", "failed")]


async def test_a_server_error_then_a_good_answer_is_retried_within_the_turn(
    parley: httpx.AsyncClient, upstream: Upstream
) -> None:
    """The policy retries 5xx by itself: a flaky server costs the client nothing."""
    sid = await _session(parley)
    upstream.mode = "flaky"
    response, answer, _ = await _ask(parley, sid, "Is the bike waterproof?", stream=False)
    assert response.status_code == 201, response.text
    assert answer["content"] == "".join(ANSWER) and upstream.attempts() == 2


async def test_a_malformed_embeddings_body_is_a_typed_error(upstream: Upstream) -> None:
    from parley.providers.embeddings.openai import OpenAIEmbedder

    embedder = OpenAIEmbedder(
        model="upstream-embed", dimension=8, base_url=upstream.base_url, timeout_s=TIMEOUT_S
    )
    try:
        assert (await embedder.embed(["hello world"])).shape == (1, 8)
        upstream.embed_mode = "non_json"
        with pytest.raises(ProviderMalformedResponse) as caught:
            await embedder.embed(["hello again"])
    finally:
        await embedder.aclose()
    assert caught.value.code == "provider_malformed_response"
    assert upstream.attempts("/v1/embeddings") == 2  # a malformed answer is not asked again


async def test_a_malformed_query_embedding_fails_the_turn_and_keeps_the_question(
    tmp_path: Path, upstream: Upstream
) -> None:
    """Over the API, with the openai embedder at the same server: documents embed fine, then
    the question's embedding comes back malformed; the turn answers 502 with its code before
    any generation, and the question is kept for a retry."""
    settings = _settings(
        tmp_path,
        upstream,
        embeddings={
            "provider": "openai",
            "model": "upstream-embed",
            "dimension": 8,
            "base_url": upstream.base_url,
        },
    )
    container = Container.build(settings, token_counter=ApproxTokenCounter())
    await container.prepare_database()
    try:
        async for client in _client(settings, container):
            sid = await _session(client)
            upstream.embed_mode = "non_json"
            response, problem, _ = await _ask(client, sid, "Is the bike waterproof?", stream=False)
            assert response.status_code == 502
            assert problem["code"] == "provider_malformed_response"
            assert upstream.attempts() == 0  # no generation was attempted
            stored = await _messages(client, sid)
            assert [(m["id"], m["status"]) for m in stored] == [(problem["message_id"], "failed")]
            upstream.embed_mode = "ok"
            r = await client.post(f"/v1/sessions/{sid}/messages/{problem['message_id']}/retry")
            assert r.status_code == 201, r.text
    finally:
        await container.aclose()
