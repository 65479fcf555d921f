"""``LLM`` adapter for OpenAI and OpenAI-compatible servers (Ollama, vLLM, llama.cpp, Groq)."""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from typing import Any

from parley.domain.chat import ChatMessage, Completion, StreamDelta, Usage
from parley.errors import ConfigurationError, ProviderUnavailable
from parley.providers.extras import require_extra
from parley.providers.llm.base import GenerationRequest
from parley.providers.llm.retries import (
    DEFAULT_RETRIES,
    RetryPolicy,
    call_with_retries,
    deadline_at,
)
from parley.providers.llm.sdk_support import (
    PLACEHOLDER_KEY,
    ProviderFaults,
    http_module,
    pooled_client,
    public_url,
)
from parley.providers.llm.streaming import StreamCall, guarded_stream


class OpenAILLM:
    """Chat completions over one pooled HTTP client, for OpenAI or any compatible server."""

    name = "openai"
    generative = True

    def __init__(
        self,
        *,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout_s: float,
        connect_timeout_s: float,
        max_connections: int,
        http_client: Any | None = None,
        max_retries: int = DEFAULT_RETRIES,
    ) -> None:
        """Build the SDK client once; ``http_client`` (an ``httpx``/``httpx2`` ``AsyncClient``
        as accepted by the installed SDK) is borrowed, not closed by :meth:`aclose`.

        ``max_retries`` is Parley's retry policy (see ``providers/llm/retries.py``); the SDK's
        own retries are off, so a call makes at most ``1 + max_retries`` attempts, all within
        ``timeout_s``.
        """
        require_extra("openai", extra="openai", reason="PARLEY_LLM__PROVIDER is openai")
        import openai

        self.model = model
        self._timeout_s = timeout_s
        self._owns_http = http_client is None
        self._closed = False
        # The SDK generation decides the HTTP library (httpx for 1.x, httpx2 for 3.x).
        http = http_module(openai.DefaultAsyncHttpxClient)
        timeout = http.Timeout(timeout_s, connect=connect_timeout_s)
        if http_client is None:
            http_client = pooled_client(http, timeout=timeout, max_connections=max_connections)
        self._http = http_client
        if api_key is None and base_url is not None:
            api_key = PLACEHOLDER_KEY
        try:
            self._client: Any = openai.AsyncOpenAI(
                api_key=api_key,
                base_url=base_url,
                timeout=timeout,
                max_retries=0,  # one retry policy: ours, bounded by the call's deadline
                http_client=http_client,
            )
        except openai.OpenAIError as exc:
            raise ProviderUnavailable(
                "OpenAI is not configured: set the LLM api_key (PARLEY_LLM__API_KEY) "
                "or OPENAI_API_KEY",
                provider=self.name,
            ) from exc
        except TypeError as exc:  # an http_client of the wrong HTTP library
            raise ConfigurationError(f"Unusable http_client for OpenAI: {exc}") from exc
        # Named in "not reachable" errors; computed once, without credentials.
        self._endpoint = public_url(str(self._client.base_url))
        self._faults = ProviderFaults(
            sdk=openai,
            sdk_error=openai.OpenAIError,
            http=http,
            provider=self.name,
            model=model,
            timeout_s=timeout_s,
            endpoint=self._endpoint,
            setting="PARLEY_LLM__BASE_URL",
        )
        self._policy = RetryPolicy(retries=max_retries)
        # Reasoning models on api.openai.com reject ``max_tokens``; compatible servers may not
        # know ``max_completion_tokens`` yet.
        self._max_tokens_param = "max_completion_tokens" if base_url is None else "max_tokens"

    async def complete(self, request: GenerationRequest) -> Completion:
        """Generate the whole answer in one request (retried per the policy, within the
        deadline)."""
        params = self._params(request)

        async def attempt() -> Any:
            try:
                return await self._client.chat.completions.create(**params)
            except self._faults.catchable as exc:
                raise self._faults.translate(exc) from exc

        response = await call_with_retries(
            attempt,
            policy=self._policy,
            deadline=deadline_at(self._timeout_s, request.deadline),
            timed_out=self._faults.timed_out,
            provider=self.name,
        )
        return self._completion(response, request)

    def stream(self, request: GenerationRequest) -> AsyncIterator[StreamDelta]:
        """Yield content deltas as they arrive, then one delta with usage and finish reason."""
        params = self._params(request)
        params["stream"] = True
        params["stream_options"] = {"include_usage": True}
        return guarded_stream(
            StreamCall(
                attempt=lambda: self._pieces(params),
                faults=self._faults,
                policy=self._policy,
                requested_deadline=request.deadline,
                estimate=lambda text: _estimate_usage(request.messages, text),
            )
        )

    async def aclose(self) -> None:
        """Close the pooled HTTP client if this adapter created it; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._owns_http:
            await self._client.close()

    def _params(self, request: GenerationRequest) -> dict[str, Any]:
        params: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "temperature": request.temperature,
            self._max_tokens_param: request.max_tokens,
        }
        if request.stop:
            params["stop"] = list(request.stop)
        return params

    def _completion(self, response: Any, request: GenerationRequest) -> Completion:
        """The completion in ``response``, checked: SDKs hand back a non-JSON body as a
        string and JSON of any shape as a model with whatever fields it had."""
        try:
            if not isinstance(response.choices, list):  # missing fields read as None
                raise TypeError("no list of choices")
            choice = response.choices[0] if response.choices else None
            text = choice.message.content if choice is not None else None
            finish = choice.finish_reason if choice is not None else None
            model = response.model
            usage = _usage(response.usage)
        except (AttributeError, TypeError, ValueError, KeyError, IndexError) as exc:
            raise self._faults.malformed("not a chat completion", exc) from exc
        if text is not None and not isinstance(text, str):
            raise self._faults.malformed("the message content is not text")
        if not text or not text.strip():
            raise self._faults.empty()
        return Completion(
            text=text,
            usage=usage or _estimate_usage(request.messages, text),
            model=str(model or self.model),
            finish_reason=str(finish or "stop"),
        )

    async def _pieces(self, params: dict[str, Any]) -> AsyncGenerator[StreamDelta, None]:
        """One streamed attempt as plain pieces; ``finish_reason`` marks the final chunk."""
        try:
            chunks = await self._client.chat.completions.create(**params)
        except self._faults.catchable as exc:
            raise self._faults.translate(exc) from exc
        received = False
        async with chunks:
            try:
                async for chunk in chunks:
                    received = True
                    for piece in self._chunk_pieces(chunk):
                        yield piece
            except self._faults.catchable as exc:
                raise self._faults.translate(exc, streaming=True) from exc
            content_type = str(chunks.response.headers.get("content-type", ""))
        if not received and not content_type.startswith("text/event-stream"):
            raise self._faults.malformed(f"a stream was asked for, {content_type!r} came back")

    def _chunk_pieces(self, chunk: Any) -> list[StreamDelta]:
        try:
            pieces = []
            usage = _usage(getattr(chunk, "usage", None))
            if usage is not None:
                pieces.append(StreamDelta(usage=usage))
            # Missing fields read as None; only the usage chunk may come without choices.
            if not isinstance(chunk.choices, list) and (usage is None or chunk.choices is not None):
                raise TypeError("no list of choices")
            for choice in chunk.choices or ():
                text = choice.delta.content if choice.delta is not None else None
                if text is not None and not isinstance(text, str):
                    raise TypeError("delta content is not text")
                if text:
                    pieces.append(StreamDelta(text=text))
                if choice.finish_reason:
                    pieces.append(StreamDelta(finish_reason=str(choice.finish_reason)))
        except (AttributeError, TypeError, ValueError, KeyError) as exc:
            raise self._faults.malformed("a chunk is not a chat completion chunk", exc) from exc
        return pieces


def _usage(raw: Any) -> Usage | None:
    if raw is None:
        return None
    return Usage(
        input_tokens=int(getattr(raw, "prompt_tokens", 0) or 0),
        output_tokens=int(getattr(raw, "completion_tokens", 0) or 0),
    )


def _estimate_usage(messages: Sequence[ChatMessage], output: str) -> Usage:
    """About four characters per token, for servers that report no usage."""
    prompt_chars = sum(len(m.content) for m in messages)
    return Usage(input_tokens=math.ceil(prompt_chars / 4), output_tokens=math.ceil(len(output) / 4))
