"""``LLM`` adapter for OpenAI and OpenAI-compatible servers (Ollama, vLLM, llama.cpp, Groq)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Sequence
from typing import Any

from parley.domain.chat import ChatMessage, Completion, StreamDelta, Usage
from parley.errors import (
    ConfigurationError,
    ProviderError,
    ProviderUnavailable,
)
from parley.providers.extras import require_extra
from parley.providers.llm.base import GenerationRequest
from parley.providers.llm.sdk_support import (
    PLACEHOLDER_KEY,
    http_module,
    pooled_client,
    public_url,
    translate_error,
)


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
        max_retries: int = 2,
    ) -> None:
        """Build the SDK client once; ``http_client`` (an ``httpx``/``httpx2`` ``AsyncClient``
        as accepted by the installed SDK) is borrowed, not closed by :meth:`aclose`."""
        require_extra("openai", extra="openai", reason="PARLEY_LLM__PROVIDER is openai")
        import openai

        self.model = model
        self._sdk = openai
        self._timeout_s = timeout_s
        self._owns_http = http_client is None
        self._closed = False
        # The SDK generation decides the HTTP library (httpx for 1.x, httpx2 for 3.x).
        http = self._http_lib = http_module(openai.DefaultAsyncHttpxClient)
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
                max_retries=max_retries,
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
        # Reasoning models on api.openai.com reject ``max_tokens``; compatible servers may not
        # know ``max_completion_tokens`` yet.
        self._max_tokens_param = "max_completion_tokens" if base_url is None else "max_tokens"

    async def complete(self, request: GenerationRequest) -> Completion:
        """Generate the whole answer in one request."""
        try:
            response = await self._client.chat.completions.create(**self._params(request))
        except (self._sdk.OpenAIError, self._http_lib.HTTPError) as exc:
            raise self._translate(exc) from exc
        choice = response.choices[0] if response.choices else None
        text = (choice.message.content if choice is not None else None) or ""
        finish = (choice.finish_reason if choice is not None else None) or "stop"
        usage = _usage(response.usage) or _estimate_usage(request.messages, text)
        return Completion(
            text=text, usage=usage, model=response.model or self.model, finish_reason=finish
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamDelta]:
        """Yield content deltas as they arrive, then one delta with usage and finish reason."""
        params = self._params(request)
        params["stream"] = True
        params["stream_options"] = {"include_usage": True}
        pieces: list[str] = []
        usage: Usage | None = None
        finish = "stop"
        try:
            chunks = await self._client.chat.completions.create(**params)
            async with chunks:
                async for chunk in chunks:
                    usage = _usage(getattr(chunk, "usage", None)) or usage
                    for choice in chunk.choices or ():
                        if choice.finish_reason:
                            finish = choice.finish_reason
                        text = choice.delta.content if choice.delta is not None else None
                        if text:
                            pieces.append(text)
                            yield StreamDelta(text=text)
        except (self._sdk.OpenAIError, self._http_lib.HTTPError) as exc:
            raise self._translate(exc) from exc
        if usage is None:
            usage = _estimate_usage(request.messages, "".join(pieces))
        yield StreamDelta(usage=usage, finish_reason=finish)

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

    def _translate(self, exc: Exception) -> ProviderError:
        return translate_error(
            exc,
            sdk=self._sdk,
            http=self._http_lib,
            provider=self.name,
            model=self.model,
            timeout_s=self._timeout_s,
            endpoint=self._endpoint,
            setting="PARLEY_LLM__BASE_URL",
        )


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
