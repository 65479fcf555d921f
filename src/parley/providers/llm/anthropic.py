"""``LLM`` adapter for Anthropic's Messages API."""

from __future__ import annotations

import os
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
        max_retries: int = DEFAULT_RETRIES,
    ) -> None:
        """Build the SDK client once; ``http_client`` (an ``AsyncClient`` of the HTTP library
        the installed SDK uses, ``httpx2`` for 2.x) is borrowed, not closed by :meth:`aclose`.

        ``max_retries`` is Parley's retry policy (see ``providers/llm/retries.py``); the SDK's
        own retries are off, so a call makes at most ``1 + max_retries`` attempts, all within
        ``timeout_s``.
        """
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
        self._timeout_s = timeout_s
        self._owns_http = http_client is None
        self._closed = False
        http = http_module(anthropic.DefaultAsyncHttpxClient)
        timeout = http.Timeout(timeout_s, connect=connect_timeout_s)
        if http_client is None:
            http_client = pooled_client(http, timeout=timeout, max_connections=max_connections)
        try:
            self._client: Any = anthropic.AsyncAnthropic(
                api_key=api_key,
                base_url=base_url,
                timeout=timeout,
                max_retries=0,  # one retry policy: ours, bounded by the call's deadline
                http_client=http_client,
            )
        except TypeError as exc:  # an http_client of the wrong HTTP library
            raise ConfigurationError(f"Unusable http_client for Anthropic: {exc}") from exc
        # Named in "not reachable" errors; computed once, without credentials.
        self._endpoint = public_url(str(self._client.base_url))
        self._faults = ProviderFaults(
            sdk=anthropic,
            sdk_error=anthropic.AnthropicError,
            http=http,
            provider=self.name,
            model=model,
            timeout_s=timeout_s,
            endpoint=self._endpoint,
            setting="PARLEY_LLM__BASE_URL",
        )
        self._policy = RetryPolicy(retries=max_retries)

    async def complete(self, request: GenerationRequest) -> Completion:
        """Generate the whole answer in one request (retried per the policy, within the
        deadline)."""
        params = self._params(request)

        async def attempt() -> Any:
            try:
                return await self._client.messages.create(**params)
            except self._faults.catchable as exc:
                raise self._faults.translate(exc) from exc

        message = await call_with_retries(
            attempt,
            policy=self._policy,
            deadline=deadline_at(self._timeout_s, request.deadline),
            timed_out=self._faults.timed_out,
            provider=self.name,
        )
        return self._completion(message)

    def stream(self, request: GenerationRequest) -> AsyncIterator[StreamDelta]:
        """Yield text deltas as they arrive, then one delta with usage and finish reason."""
        params = self._params(request)
        params["stream"] = True
        return guarded_stream(
            StreamCall(
                attempt=lambda: self._pieces(params),
                faults=self._faults,
                policy=self._policy,
                requested_deadline=request.deadline,
                # Anthropic reports usage with its final events; nothing to estimate.
                estimate=lambda text: Usage(),
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

    def _completion(self, message: Any) -> Completion:
        """The message's text, checked: SDKs hand back a non-JSON body as a string and JSON
        of any shape as a model with whatever fields it had."""
        try:
            text = "".join(
                block.text for block in message.content if getattr(block, "type", "") == "text"
            )
            usage = Usage(
                input_tokens=int(message.usage.input_tokens or 0),
                output_tokens=int(message.usage.output_tokens or 0),
            )
            model = message.model
            stop_reason = message.stop_reason
        except (AttributeError, TypeError, ValueError) as exc:
            raise self._faults.malformed("not a message", exc) from exc
        if not text.strip():
            raise self._faults.empty()
        return Completion(
            text=text,
            usage=usage,
            model=str(model or self.model),
            finish_reason=_finish_reason(stop_reason),
        )

    async def _pieces(self, params: dict[str, Any]) -> AsyncGenerator[StreamDelta, None]:
        """One streamed attempt as plain pieces; ``message_stop`` marks the end.

        Input tokens arrive with ``message_start``; output tokens (cumulative) and the stop
        reason with ``message_delta``; all are given with the final piece.
        """
        try:
            events = await self._client.messages.create(**params)
        except self._faults.catchable as exc:
            raise self._faults.translate(exc) from exc
        counts = [0, 0]
        stop = ["stop"]
        started = False
        async with events:
            try:
                async for event in events:
                    started = started or getattr(event, "type", "") == "message_start"
                    piece = self._event_piece(event, counts, stop)
                    if piece is not None:
                        yield piece
            except self._faults.catchable as exc:
                raise self._faults.translate(exc, streaming=True) from exc
        if not started:  # not a message stream at all (an HTML page, JSON, other events)
            raise self._faults.malformed("the stream has no message_start event")

    def _event_piece(self, event: Any, counts: list[int], stop: list[str]) -> StreamDelta | None:
        """The piece an event carries, if any; ``counts`` (input, output) and ``stop`` are
        updated from usage and stop-reason events."""
        try:
            kind = getattr(event, "type", "")
            if kind == "message_start":
                usage = event.message.usage
                counts[:] = [int(usage.input_tokens or 0), int(usage.output_tokens or 0)]
            elif kind == "content_block_delta":
                text = getattr(event.delta, "text", None)
                if text is not None and not isinstance(text, str):
                    raise TypeError("delta text is not text")
                return StreamDelta(text=text) if text else None
            elif kind == "message_delta":
                # Counts here are cumulative and final for the message.
                usage = event.usage
                counts[1] = int(usage.output_tokens or counts[1])
                counts[0] = int(getattr(usage, "input_tokens", None) or counts[0])
                if event.delta.stop_reason:
                    stop[0] = _finish_reason(event.delta.stop_reason)
            elif kind == "message_stop":
                return StreamDelta(
                    usage=Usage(input_tokens=counts[0], output_tokens=counts[1]),
                    finish_reason=stop[0],
                )
        except (AttributeError, TypeError, ValueError) as exc:
            raise self._faults.malformed("an event is not a message stream event", exc) from exc
        return None


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
