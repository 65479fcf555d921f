"""``LLM`` adapter for Anthropic's Messages API."""

from __future__ import annotations

import os
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

# Anthropic stop reasons in the vocabulary of ``Completion.finish_reason``.
_FINISH_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length"}


class AnthropicLLM:
    """Claude models over one pooled HTTP client."""

    name = "anthropic"
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
        """Build the SDK client once; ``http_client`` (an ``AsyncClient`` of the HTTP library
        the installed SDK uses, ``httpx2`` for 2.x) is borrowed, not closed by :meth:`aclose`."""
        require_extra("anthropic", extra="anthropic", reason="PARLEY_LLM__PROVIDER is anthropic")
        import anthropic

        if api_key is None:
            api_key = os.environ.get("ANTHROPIC_API_KEY")
        if api_key is None and base_url is not None:
            api_key = PLACEHOLDER_KEY
        if api_key is None and not os.environ.get("ANTHROPIC_AUTH_TOKEN"):
            raise ProviderUnavailable(
                "Anthropic is not configured: set the LLM api_key (PARLEY_LLM__API_KEY) "
                "or ANTHROPIC_API_KEY",
                provider=self.name,
            )
        self.model = model
        self._sdk = anthropic
        self._timeout_s = timeout_s
        self._owns_http = http_client is None
        self._closed = False
        http = self._http_lib = http_module(anthropic.DefaultAsyncHttpxClient)
        timeout = http.Timeout(timeout_s, connect=connect_timeout_s)
        if http_client is None:
            http_client = pooled_client(http, timeout=timeout, max_connections=max_connections)
        try:
            self._client: Any = anthropic.AsyncAnthropic(
                api_key=api_key,
                base_url=base_url,
                timeout=timeout,
                max_retries=max_retries,
                http_client=http_client,
            )
        except TypeError as exc:  # an http_client of the wrong HTTP library
            raise ConfigurationError(f"Unusable http_client for Anthropic: {exc}") from exc
        # Named in "not reachable" errors; computed once, without credentials.
        self._endpoint = public_url(str(self._client.base_url))

    async def complete(self, request: GenerationRequest) -> Completion:
        """Generate the whole answer in one request."""
        try:
            message = await self._client.messages.create(**self._params(request))
        except (self._sdk.AnthropicError, self._http_lib.HTTPError) as exc:
            raise self._translate(exc) from exc
        text = "".join(
            block.text for block in message.content if getattr(block, "type", "") == "text"
        )
        return Completion(
            text=text,
            usage=Usage(
                input_tokens=int(message.usage.input_tokens or 0),
                output_tokens=int(message.usage.output_tokens or 0),
            ),
            model=message.model or self.model,
            finish_reason=_finish_reason(message.stop_reason),
        )

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamDelta]:
        """Yield text deltas as they arrive, then one delta with usage and finish reason.

        Input tokens arrive with ``message_start``; output tokens (cumulative) and the stop
        reason with ``message_delta``.
        """
        params = self._params(request)
        params["stream"] = True
        input_tokens = output_tokens = 0
        finish = "stop"
        try:
            events = await self._client.messages.create(**params)
            async with events:
                async for event in events:
                    kind = getattr(event, "type", "")
                    if kind == "message_start":
                        usage = event.message.usage
                        input_tokens = int(usage.input_tokens or 0)
                        output_tokens = int(usage.output_tokens or 0)
                    elif kind == "content_block_delta":
                        text = getattr(event.delta, "text", None)
                        if text:
                            yield StreamDelta(text=text)
                    elif kind == "message_delta":
                        # Counts here are cumulative and final for the message.
                        usage = event.usage
                        output_tokens = int(usage.output_tokens or output_tokens)
                        input_tokens = int(getattr(usage, "input_tokens", None) or input_tokens)
                        if event.delta.stop_reason:
                            finish = _finish_reason(event.delta.stop_reason)
        except (self._sdk.AnthropicError, self._http_lib.HTTPError) as exc:
            raise self._translate(exc) from exc
        yield StreamDelta(
            usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens),
            finish_reason=finish,
        )

    async def aclose(self) -> None:
        """Close the pooled HTTP client if this adapter created it; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._owns_http:
            await self._client.close()

    def _params(self, request: GenerationRequest) -> dict[str, Any]:
        system, messages = _split_messages(request.messages)
        params: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": request.max_tokens,
        }
        # No ``temperature``: SDK 2.x and API version 2026-10-21 dropped the sampling
        # parameters (current models reject them), so ``request.temperature`` is ignored here.
        if system:
            params["system"] = system
        if request.stop:
            params["stop_sequences"] = list(request.stop)
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


def _split_messages(
    messages: Sequence[ChatMessage],
) -> tuple[str, list[dict[str, str]]]:
    """System text for the ``system`` parameter, and the turns with same-role runs merged
    (the API wants user and assistant to alternate)."""
    system_parts: list[str] = []
    turns: list[dict[str, str]] = []
    for message in messages:
        if message.role == "system":
            system_parts.append(message.content)
        elif turns and turns[-1]["role"] == message.role:
            turns[-1]["content"] += "\n\n" + message.content
        else:
            turns.append({"role": message.role, "content": message.content})
    return "\n\n".join(system_parts), turns


def _finish_reason(stop_reason: str | None) -> str:
    if not stop_reason:
        return "stop"
    return _FINISH_REASONS.get(stop_reason, stop_reason)
