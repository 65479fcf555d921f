"""One contract every ``LLM`` adapter passes, plus wire-format and error-translation tests.

The OpenAI and Anthropic adapters run their real SDKs against ``MockTransport`` handlers
that speak the vendors' JSON and server-sent-event formats.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from parley.domain.chat import ChatMessage, StreamDelta
from parley.domain.retrieval import RetrievedChunk
from parley.errors import (
    ProviderEmptyResponse,
    ProviderError,
    ProviderMalformedResponse,
    ProviderRateLimited,
    ProviderStreamCut,
    ProviderTimeout,
    ProviderUnavailable,
)
from parley.providers.llm.base import LLM, GenerationRequest
from parley.providers.llm.extractive import ExtractiveLLM
from parley.providers.llm.fake import FakeLLM

PIECES = ["Parley", " keeps", " vectors", " in", " SQLite", " by", " default", " [1]."]
ANSWER = "".join(PIECES)
INPUT_TOKENS, OUTPUT_TOKENS = 42, len(PIECES)

Handler = Callable[[Any], Any]
# Mock-backed HTTP clients are borrowed by the adapters (not closed by them); closed per test.
_OPEN_CLIENTS: list[Any] = []


@pytest.fixture(autouse=True)
async def _close_http_clients() -> AsyncIterator[None]:
    yield
    while _OPEN_CLIENTS:
        await _OPEN_CLIENTS.pop().aclose()


def _request() -> GenerationRequest:
    chunk = RetrievedChunk(
        chunk_id=1,
        collection_id="docs",
        document_id="d1",
        document_title="Guide",
        source="guide.md",
        text="Parley keeps vectors in SQLite by default. Postgres with pgvector is optional.",
        token_count=14,
        position=0,
        meta={},
    )
    return GenerationRequest(
        messages=[
            ChatMessage(role="system", content="Answer from the sources."),
            ChatMessage(role="user", content="Earlier question"),
            ChatMessage(role="assistant", content="Earlier answer"),
            ChatMessage(role="user", content="[1] Guide\n...\n\nQuestion: Where are vectors kept?"),
        ],
        question="Where are vectors kept?",
        sources=[chunk],
        max_tokens=100,
    )


def _http_lib(sdk: Any) -> Any:
    """The HTTP library (httpx or httpx2) the installed SDK is built on."""
    for cls in sdk.DefaultAsyncHttpxClient.__mro__:
        if cls.__name__ == "AsyncClient":
            return importlib.import_module(cls.__module__.partition(".")[0])
    raise AssertionError("SDK has no AsyncClient base")


def _sse(events: list[tuple[str | None, Any]]) -> bytes:
    lines = []
    for event, data in events:
        if event:
            lines.append(f"event: {event}")
        lines.append(f"data: {data if isinstance(data, str) else json.dumps(data)}")
        lines.append("")
    return ("\n".join(lines) + "\n").encode()


# --- OpenAI wire format ---------------------------------------------------------------------


def _openai_json() -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "gpt-test",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": ANSWER},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": INPUT_TOKENS,
            "completion_tokens": OUTPUT_TOKENS,
            "total_tokens": INPUT_TOKENS + OUTPUT_TOKENS,
        },
    }


def _openai_sse(*, with_usage: bool = True) -> bytes:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": "gpt-test",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    events: list[tuple[str | None, Any]] = [(None, chunk({"role": "assistant", "content": ""}))]
    events += [(None, chunk({"content": piece})) for piece in PIECES]
    events.append((None, chunk({}, "stop")))
    if with_usage:
        usage_chunk = chunk({})
        usage_chunk["choices"] = []
        usage_chunk["usage"] = _openai_json()["usage"]
        events.append((None, usage_chunk))
    events.append((None, "[DONE]"))
    return _sse(events)


def openai_handler(http: Any, seen: list[dict[str, Any]], *, with_usage: bool = True) -> Handler:
    def handle(request: Any) -> Any:
        assert request.method == "POST"
        assert request.url.path.endswith("/chat/completions")
        body = json.loads(request.content)
        seen.append({"body": body, "headers": dict(request.headers), "url": str(request.url)})
        if body.get("stream"):
            return http.Response(
                200,
                headers={"content-type": "text/event-stream"},
                content=_openai_sse(with_usage=with_usage),
            )
        return http.Response(200, json=_openai_json())

    return handle


# --- Anthropic wire format ------------------------------------------------------------------


def _anthropic_json() -> dict[str, Any]:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-test",
        "content": [{"type": "text", "text": ANSWER}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": OUTPUT_TOKENS},
    }


def _anthropic_sse(*, stop_reason: str = "end_turn") -> bytes:
    start = _anthropic_json() | {"content": [], "stop_reason": None}
    start["usage"] = {"input_tokens": INPUT_TOKENS, "output_tokens": 1}
    events: list[tuple[str | None, Any]] = [
        ("message_start", {"type": "message_start", "message": start}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
        ("ping", {"type": "ping"}),
    ]
    events += [
        (
            "content_block_delta",
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
        )
        for p in PIECES
    ]
    events += [
        ("content_block_stop", {"type": "content_block_stop", "index": 0}),
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": OUTPUT_TOKENS},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    return _sse(events)


def anthropic_handler(
    http: Any, seen: list[dict[str, Any]], *, stop_reason: str = "end_turn"
) -> Handler:
    def handle(request: Any) -> Any:
        assert request.method == "POST"
        assert request.url.path.endswith("/v1/messages")
        body = json.loads(request.content)
        seen.append({"body": body, "headers": dict(request.headers), "url": str(request.url)})
        if body.get("stream"):
            return http.Response(
                200,
                headers={"content-type": "text/event-stream"},
                content=_anthropic_sse(stop_reason=stop_reason),
            )
        return http.Response(200, json=_anthropic_json() | {"stop_reason": stop_reason})

    return handle


# --- Adapter factories ----------------------------------------------------------------------


def make_openai(
    handler_factory: Callable[..., Handler] = openai_handler, **kw: Any
) -> tuple[Any, list[dict[str, Any]], Any]:
    sdk = pytest.importorskip("openai")
    from parley.providers.llm.openai import OpenAILLM

    http = _http_lib(sdk)
    seen: list[dict[str, Any]] = []
    client = http.AsyncClient(transport=http.MockTransport(handler_factory(http, seen, **kw)))
    _OPEN_CLIENTS.append(client)
    llm = OpenAILLM(
        model="gpt-test",
        api_key="sk-test",
        timeout_s=5,
        connect_timeout_s=1,
        max_connections=4,
        http_client=client,
        max_retries=0,
    )
    return llm, seen, client


def make_anthropic(
    handler_factory: Callable[..., Handler] = anthropic_handler, **kw: Any
) -> tuple[Any, list[dict[str, Any]], Any]:
    sdk = pytest.importorskip("anthropic")
    from parley.providers.llm.anthropic import AnthropicLLM

    http = _http_lib(sdk)
    seen: list[dict[str, Any]] = []
    client = http.AsyncClient(transport=http.MockTransport(handler_factory(http, seen, **kw)))
    _OPEN_CLIENTS.append(client)
    llm = AnthropicLLM(
        model="claude-test",
        api_key="sk-ant-test",
        timeout_s=5,
        connect_timeout_s=1,
        max_connections=4,
        http_client=client,
        max_retries=0,
    )
    return llm, seen, client


FACTORIES: dict[str, Callable[[], LLM]] = {
    "openai": lambda: make_openai()[0],
    "anthropic": lambda: make_anthropic()[0],
    "extractive": lambda: ExtractiveLLM(),
    "fake": lambda: FakeLLM(),
}


@pytest.fixture(params=sorted(FACTORIES))
async def llm(request: pytest.FixtureRequest) -> AsyncIterator[LLM]:
    adapter = FACTORIES[request.param]()
    yield adapter
    await adapter.aclose()


async def _collect(stream: AsyncIterator[StreamDelta]) -> list[StreamDelta]:
    return [delta async for delta in stream]


# --- The contract ---------------------------------------------------------------------------


async def test_satisfies_protocol(llm: LLM) -> None:
    assert isinstance(llm, LLM)
    assert llm.name and isinstance(llm.name, str)
    assert llm.model and isinstance(llm.model, str)
    assert isinstance(llm.generative, bool)


async def test_complete_returns_text_and_usage(llm: LLM) -> None:
    completion = await llm.complete(_request())
    assert completion.text.strip()
    assert completion.usage.input_tokens > 0
    assert completion.usage.output_tokens > 0
    assert completion.model
    assert completion.finish_reason == "stop"


async def test_stream_yields_text_then_exactly_one_usage_delta(llm: LLM) -> None:
    deltas = await _collect(llm.stream(_request()))
    assert any(d.text for d in deltas[:-1])
    assert [d.usage is not None for d in deltas].count(True) == 1
    last = deltas[-1]
    assert last.usage is not None and last.text == ""
    assert last.usage.input_tokens > 0 and last.usage.output_tokens > 0
    assert last.finish_reason == "stop"


async def test_stream_concatenates_to_complete(llm: LLM) -> None:
    completion = await llm.complete(_request())
    deltas = await _collect(llm.stream(_request()))
    assert "".join(d.text for d in deltas) == completion.text
    assert deltas[-1].usage == completion.usage


async def test_aclose_is_idempotent(llm: LLM) -> None:
    await llm.aclose()
    await llm.aclose()


# --- OpenAI specifics ----------------------------------------------------------------------


async def test_openai_sends_chat_request_and_asks_for_stream_usage() -> None:
    llm, seen, _ = make_openai()
    await llm.complete(_request())
    await _collect(llm.stream(_request()))
    plain, streamed = seen[0], seen[1]
    assert plain["headers"]["authorization"] == "Bearer sk-test"
    assert plain["body"]["model"] == "gpt-test"
    assert [m["role"] for m in plain["body"]["messages"]] == [
        "system",
        "user",
        "assistant",
        "user",
    ]
    assert plain["body"]["max_completion_tokens"] == 100
    assert "stream" not in plain["body"] or plain["body"]["stream"] is False
    assert streamed["body"]["stream"] is True
    assert streamed["body"]["stream_options"] == {"include_usage": True}
    await llm.aclose()


async def test_openai_compatible_server_uses_base_url_and_max_tokens() -> None:
    sdk = pytest.importorskip("openai")
    from parley.providers.llm.openai import OpenAILLM

    http = _http_lib(sdk)
    seen: list[dict[str, Any]] = []
    client = http.AsyncClient(transport=http.MockTransport(openai_handler(http, seen)))
    _OPEN_CLIENTS.append(client)
    llm = OpenAILLM(
        model="llama3.1",
        base_url="http://localhost:11434/v1",
        timeout_s=5,
        connect_timeout_s=1,
        max_connections=2,
        http_client=client,
    )
    completion = await llm.complete(_request())
    assert completion.text == ANSWER
    assert seen[0]["url"] == "http://localhost:11434/v1/chat/completions"
    assert seen[0]["body"]["max_tokens"] == 100
    assert "max_completion_tokens" not in seen[0]["body"]
    await llm.aclose()


async def test_openai_stream_without_server_usage_estimates_it() -> None:
    llm, _, _ = make_openai(with_usage=False)
    deltas = await _collect(llm.stream(_request()))
    assert "".join(d.text for d in deltas) == ANSWER
    usage = deltas[-1].usage
    assert usage is not None
    assert usage.output_tokens == -(-len(ANSWER) // 4)
    assert usage.input_tokens > 0
    await llm.aclose()


async def test_openai_passes_stop_sequences() -> None:
    llm, seen, _ = make_openai()
    request = _request()
    await llm.complete(
        GenerationRequest(messages=request.messages, stop=("\n\n",), temperature=0.0)
    )
    assert seen[0]["body"]["stop"] == ["\n\n"]
    assert seen[0]["body"]["temperature"] == 0.0
    await llm.aclose()


async def test_openai_missing_sdk_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from parley.providers.llm.openai import OpenAILLM

    monkeypatch.setitem(sys.modules, "openai", None)
    with pytest.raises(ProviderUnavailable, match=r'pip install "parley\[openai\]"'):
        OpenAILLM(model="m", api_key="k", timeout_s=1, connect_timeout_s=1, max_connections=1)


async def test_openai_without_key_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("openai")
    from parley.providers.llm.openai import OpenAILLM

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_ADMIN_KEY", raising=False)
    with pytest.raises(ProviderUnavailable, match="api_key"):
        OpenAILLM(model="m", timeout_s=1, connect_timeout_s=1, max_connections=1)


async def test_owned_http_client_is_created_and_closed() -> None:
    pytest.importorskip("openai")
    from parley.providers.llm.openai import OpenAILLM

    llm = OpenAILLM(model="m", api_key="k", timeout_s=7, connect_timeout_s=2, max_connections=3)
    http = llm._http  # the pool is created once, with explicit timeouts
    assert http.timeout.read == 7 and http.timeout.connect == 2
    await llm.aclose()
    await llm.aclose()
    assert http.is_closed


# --- Anthropic specifics -------------------------------------------------------------------


async def test_anthropic_moves_system_prompt_to_system_parameter() -> None:
    llm, seen, _ = make_anthropic()
    await llm.complete(_request())
    await _collect(llm.stream(_request()))
    body = seen[0]["body"]
    headers = seen[0]["headers"]
    # SDK 2.x sends the key as a bearer token; older ones as x-api-key.
    assert "sk-ant-test" in (headers.get("x-api-key"), headers.get("authorization", "")[7:])
    assert "temperature" not in body  # rejected by current Anthropic models
    assert body["system"] == "Answer from the sources."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["max_tokens"] == 100
    assert seen[1]["body"]["stream"] is True
    await llm.aclose()


async def test_anthropic_merges_consecutive_turns_of_one_role() -> None:
    llm, seen, _ = make_anthropic()
    await llm.complete(
        GenerationRequest(
            messages=[
                ChatMessage(role="user", content="a"),
                ChatMessage(role="user", content="b"),
            ]
        )
    )
    assert seen[0]["body"]["messages"] == [{"role": "user", "content": "a\n\nb"}]
    assert "system" not in seen[0]["body"]
    await llm.aclose()


async def test_anthropic_maps_max_tokens_stop_to_length() -> None:
    llm, _, _ = make_anthropic(stop_reason="max_tokens")
    assert (await llm.complete(_request())).finish_reason == "length"
    deltas = await _collect(llm.stream(_request()))
    assert deltas[-1].finish_reason == "length"
    assert deltas[-1].usage is not None
    assert deltas[-1].usage.input_tokens == INPUT_TOKENS
    assert deltas[-1].usage.output_tokens == OUTPUT_TOKENS
    await llm.aclose()


async def test_anthropic_without_key_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("anthropic")
    from parley.providers.llm.anthropic import AnthropicLLM

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    with pytest.raises(ProviderUnavailable, match="api_key"):
        AnthropicLLM(model="m", timeout_s=1, connect_timeout_s=1, max_connections=1)


async def test_anthropic_missing_sdk_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from parley.providers.llm.anthropic import AnthropicLLM

    monkeypatch.setitem(sys.modules, "anthropic", None)
    with pytest.raises(ProviderUnavailable, match=r'pip install "parley\[anthropic\]"'):
        AnthropicLLM(model="m", api_key="k", timeout_s=1, connect_timeout_s=1, max_connections=1)


# --- Error translation (both vendors, both call styles) ------------------------------------


def _failing(kind: str) -> Callable[..., Handler]:
    def factory(http: Any, seen: list[dict[str, Any]]) -> Handler:
        def handle(request: Any) -> Any:
            seen.append({})
            if kind == "timeout":
                raise http.ReadTimeout("timed out", request=request)
            if kind == "connect":
                raise http.ConnectError("connection refused", request=request)
            status = int(kind)
            return http.Response(
                status,
                json={"error": {"type": "error", "message": f"boom {status}"}},
                headers={"retry-after": "0"},
            )

        return handle

    return factory


def _midstream_timeout(http: Any, seen: list[dict[str, Any]]) -> Handler:
    def handle(request: Any) -> Any:
        openai_wire = request.url.path.endswith("/chat/completions")
        full = _openai_sse() if openai_wire else _anthropic_sse()
        first_event = full.split(b"\n\n")[0] + b"\n\n"

        async def chunks() -> AsyncIterator[bytes]:
            yield first_event
            raise http.ReadTimeout("stalled", request=request)

        return http.Response(200, headers={"content-type": "text/event-stream"}, content=chunks())

    return handle


VENDORS = {"openai": make_openai, "anthropic": make_anthropic}
FAILURES = [
    ("timeout", ProviderTimeout),
    ("connect", ProviderUnavailable),
    ("500", ProviderError),
    ("429", ProviderRateLimited),
]


@pytest.mark.parametrize("vendor", sorted(VENDORS))
@pytest.mark.parametrize(("kind", "expected"), FAILURES)
@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_vendor_errors_are_translated(
    vendor: str, kind: str, expected: type[ProviderError], mode: str
) -> None:
    llm, seen, _ = VENDORS[vendor](_failing(kind))
    with pytest.raises(expected) as caught:
        if mode == "complete":
            await llm.complete(_request())
        else:
            await _collect(llm.stream(_request()))
    assert type(caught.value) is expected
    assert caught.value.__cause__ is not None  # raised ``from`` the SDK error
    assert type(caught.value.__cause__).__module__.partition(".")[0] == vendor
    if kind.isdigit():
        assert caught.value.extra["status"] == int(kind)
        assert kind in caught.value.detail
    assert len(seen) == 1  # retries disabled: exactly one attempt
    await llm.aclose()


@pytest.mark.parametrize("vendor", sorted(VENDORS))
async def test_timeout_in_the_middle_of_a_stream_is_translated(vendor: str) -> None:
    llm, _, _ = VENDORS[vendor](_midstream_timeout)
    with pytest.raises(ProviderTimeout):
        await _collect(llm.stream(_request()))
    await llm.aclose()


@pytest.mark.parametrize("vendor", sorted(VENDORS))
async def test_borrowed_http_client_stays_open(vendor: str) -> None:
    llm, _, client = VENDORS[vendor]()
    await llm.aclose()
    assert not client.is_closed


# --- Upstream faults: typed, retried per the one policy, bounded by the deadline ------------


def _adapter(vendor: str, handle: Handler, *, retries: int = 0, timeout_s: float = 5.0) -> LLM:
    """An adapter of ``vendor`` over ``handle`` with Parley's retry policy set to ``retries``."""
    sdk = pytest.importorskip(vendor)
    http = _http_lib(sdk)
    client = http.AsyncClient(transport=http.MockTransport(handle))
    _OPEN_CLIENTS.append(client)
    options: dict[str, Any] = {
        "model": "m",
        "api_key": "k",
        "timeout_s": timeout_s,
        "connect_timeout_s": 1,
        "max_connections": 2,
        "http_client": client,
        "max_retries": retries,
    }
    if vendor == "openai":
        from parley.providers.llm.openai import OpenAILLM

        return OpenAILLM(**options)
    from parley.providers.llm.anthropic import AnthropicLLM

    return AnthropicLLM(**options)


def _wire(vendor: str, fault: str, streaming: bool) -> tuple[int, dict[str, str], Any]:
    """(status, headers, body) of a 200 that is not a usable answer, in ``vendor``'s format."""
    sse = {"content-type": "text/event-stream"}
    if fault == "html":
        return 200, {"content-type": "text/html"}, b"<html>502 Bad Gateway</html>"
    if fault == "not_json":
        return 200, {"content-type": "application/json"}, b"{oops"
    if fault == "wrong_shape":
        if streaming:
            return 200, sse, _sse([(None, {"result": "hello"}), (None, "[DONE]")])
        return 200, {"content-type": "application/json"}, b'{"result": "hello"}'
    events = (_openai_sse() if vendor == "openai" else _anthropic_sse()).split(b"\n\n")
    if fault == "empty" and not streaming:
        body = _openai_json() if vendor == "openai" else _anthropic_json()
        if vendor == "openai":
            body["choices"][0]["message"]["content"] = ""
        else:
            body["content"] = []
        return 200, {"content-type": "application/json"}, json.dumps(body).encode()
    if fault == "empty":  # the events that carry text left out, everything else kept
        kept = [
            e
            for e in events
            if b"Parley" not in e
            and not any(f'"{json.dumps(p)[1:-1]}"'.encode() in e for p in PIECES)
        ]
        return 200, sse, b"\n\n".join(kept)
    # "cut": a clean end of the body after some text, before the final event
    return 200, sse, b"\n\n".join(events[:4]) + b"\n\n"


UNUSABLE = [
    ("html", ProviderMalformedResponse),
    ("not_json", ProviderMalformedResponse),
    ("wrong_shape", ProviderMalformedResponse),
    ("empty", ProviderEmptyResponse),
]


@pytest.mark.parametrize("vendor", sorted(VENDORS))
@pytest.mark.parametrize(
    ("mode", "fault", "expected"),
    # A whole answer cannot be cut short cleanly (its length is declared): streams only.
    [
        *((m, f, e) for m in ("complete", "stream") for f, e in UNUSABLE),
        ("stream", "cut", ProviderStreamCut),
    ],
)
async def test_unusable_answers_are_typed_and_not_retried(
    vendor: str, mode: str, fault: str, expected: type[ProviderError]
) -> None:
    seen: list[None] = []

    def handle(request: Any) -> Any:
        seen.append(None)
        status, headers, body = _wire(vendor, fault, mode == "stream")
        return _http_lib(pytest.importorskip(vendor)).Response(
            status, headers=headers, content=body
        )

    llm = _adapter(vendor, handle, retries=2)
    with pytest.raises(expected) as caught:
        if mode == "complete":
            await llm.complete(_request())
        else:
            await _collect(llm.stream(_request()))
    assert type(caught.value) is expected
    assert "http" not in caught.value.public_detail  # the endpoint is for operators only
    assert len(seen) == 1  # a misbehaving server is not asked again


@pytest.mark.parametrize("vendor", sorted(VENDORS))
async def test_a_connection_dropped_mid_stream_is_a_cut(vendor: str) -> None:
    http = _http_lib(pytest.importorskip(vendor))

    def handle(request: Any) -> Any:
        full = _openai_sse() if vendor == "openai" else _anthropic_sse()
        head = b"\n\n".join(full.split(b"\n\n")[:4]) + b"\n\n"

        async def chunks() -> AsyncIterator[bytes]:
            yield head
            raise http.RemoteProtocolError("peer closed connection", request=request)

        return http.Response(200, headers={"content-type": "text/event-stream"}, content=chunks())

    llm = _adapter(vendor, handle, retries=2)
    texts: list[str] = []
    with pytest.raises(ProviderStreamCut):
        async for delta in llm.stream(_request()):
            texts.append(delta.text)
    assert "".join(texts)  # what came before the cut was passed on


@pytest.mark.parametrize("vendor", sorted(VENDORS))
@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_server_errors_are_retried_by_the_policy_only(vendor: str, mode: str) -> None:
    """The SDK's own retries are off: ``retries=2`` means exactly three requests."""
    seen: list[None] = []
    http = _http_lib(pytest.importorskip(vendor))

    def handle(request: Any) -> Any:
        seen.append(None)
        return http.Response(503, json={"error": {"type": "overloaded", "message": "busy"}})

    llm = _adapter(vendor, handle, retries=2)
    with pytest.raises(ProviderError) as caught:
        if mode == "complete":
            await llm.complete(_request())
        else:
            await _collect(llm.stream(_request()))
    assert caught.value.extra["status"] == 503 and len(seen) == 3


@pytest.mark.parametrize("vendor", sorted(VENDORS))
async def test_a_short_retry_after_is_waited_for_and_a_long_one_passed_on(vendor: str) -> None:
    http = _http_lib(pytest.importorskip(vendor))
    seen: list[None] = []
    good = openai_handler if vendor == "openai" else anthropic_handler

    def short_then_good(request: Any) -> Any:
        seen.append(None)
        if len(seen) == 1:
            return http.Response(429, json={"error": {}}, headers={"retry-after-ms": "50"})
        return good(http, [])(request)

    completion = await _adapter(vendor, short_then_good, retries=2).complete(_request())
    assert completion.text == ANSWER and len(seen) == 2

    seen.clear()

    def long_wait(request: Any) -> Any:
        seen.append(None)
        return http.Response(429, json={"error": {}}, headers={"retry-after": "7"})

    with pytest.raises(ProviderRateLimited) as caught:
        await _adapter(vendor, long_wait, retries=2).complete(_request())
    assert caught.value.retry_after_s == 7 and len(seen) == 1


@pytest.mark.parametrize("vendor", sorted(VENDORS))
@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_the_deadline_bounds_the_whole_call(vendor: str, mode: str) -> None:
    """A server that stalls gets one attempt and the call ends at ``timeout_s``, not at
    ``timeout_s`` per attempt (the 25 s for 8 s of the issue)."""
    http = _http_lib(pytest.importorskip(vendor))
    seen: list[None] = []

    async def stall(request: Any) -> Any:
        seen.append(None)
        await asyncio.sleep(30)
        return http.Response(500)

    llm = _adapter(vendor, stall, retries=2, timeout_s=0.3)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(ProviderTimeout):
        if mode == "complete":
            await llm.complete(_request())
        else:
            await _collect(llm.stream(_request()))
    assert 0.25 <= loop.time() - started < 0.8 and len(seen) == 1


async def test_a_request_deadline_earlier_than_the_timeout_wins() -> None:
    """A turn's rewrite and answer share one deadline."""
    http = _http_lib(pytest.importorskip("openai"))

    async def stall(request: Any) -> Any:
        await asyncio.sleep(30)
        return http.Response(500)

    llm = _adapter("openai", stall, timeout_s=5)
    loop = asyncio.get_running_loop()
    request = _request()
    started = loop.time()
    with pytest.raises(ProviderTimeout):
        await llm.complete(GenerationRequest(messages=request.messages, deadline=started + 0.2))
    assert loop.time() - started < 0.6


# --- FakeLLM specifics ---------------------------------------------------------------------


async def test_fake_default_reply_cites_the_first_source_and_records_requests() -> None:
    fake = FakeLLM()
    request = _request()
    completion = await fake.complete(request)
    assert completion.text == (
        "Based on the documents, Parley keeps vectors in SQLite by default. "
        "Postgres with pgvector is optional [1]."
    )
    assert completion.usage.output_tokens == len(completion.text.split())
    assert completion.usage.input_tokens == sum(len(m.content.split()) for m in request.messages)
    no_sources = await fake.complete(GenerationRequest(messages=request.messages))
    assert no_sources.text == "I could not find this in the documents."
    assert fake.requests == [request, GenerationRequest(messages=request.messages)]


async def test_fake_reply_delay_and_failure() -> None:
    fake = FakeLLM(reply="one two three", token_delay_s=0.001)
    deltas = await _collect(fake.stream(_request()))
    assert [d.text for d in deltas[:-1]] == ["one ", "two ", "three"]
    boom = ProviderTimeout("slow")
    failing = FakeLLM(fail_with=boom)
    with pytest.raises(ProviderTimeout):
        await failing.complete(_request())
    with pytest.raises(ProviderTimeout):
        await _collect(failing.stream(_request()))
    assert len(failing.requests) == 2
    await failing.aclose()
    assert failing.closed
