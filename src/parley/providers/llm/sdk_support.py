"""Helpers shared by the adapters built on vendor SDKs (OpenAI, Anthropic)."""

from __future__ import annotations

import email.utils
import importlib
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from parley.errors import (
    ProviderEmptyResponse,
    ProviderError,
    ProviderMalformedResponse,
    ProviderRateLimited,
    ProviderStreamCut,
    ProviderTimeout,
    ProviderUnavailable,
)

# Proxies in front of an API may need no key, but the SDKs refuse to send without one.
PLACEHOLDER_KEY = "not-needed"
_VENDOR_MESSAGE_CHARS = 300
_MAX_RETRY_AFTER_S = 86_400.0


def http_module(sdk_client_class: type) -> Any:
    """The HTTP library (``httpx`` or ``httpx2``) whose ``AsyncClient`` the SDK expects."""
    for cls in sdk_client_class.__mro__:
        if cls.__name__ == "AsyncClient":
            return importlib.import_module(cls.__module__.partition(".")[0])
    return importlib.import_module("httpx")


def pooled_client(http: Any, *, timeout: Any, max_connections: int) -> Any:
    """One ``AsyncClient`` of the SDK's HTTP library per provider, with explicit timeouts and
    connection limits, created once at start-up and shared by every request."""
    limits = http.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return http.AsyncClient(timeout=timeout, limits=limits)


def public_url(url: str) -> str:
    """``url`` without what may be secret (user, password, query, fragment), for messages."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:  # unparsable: show nothing of it rather than risk a credential
        return "<invalid URL>"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port is not None else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")).rstrip("/")


def retry_after_s(headers: Any) -> float | None:
    """The wait a response asks for: ``retry-after-ms``, else ``Retry-After`` in seconds or as
    an HTTP date; None when absent or unreadable. Capped at a day (a hostile value must not
    reach the client as a week-long ``Retry-After``)."""
    if headers is None:
        return None
    seconds: float | None = None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        raw = headers.get(name)
        if raw is None:
            continue
        try:
            seconds = float(raw) / divisor
        except ValueError:
            continue
        break
    if seconds is None:
        seconds = _seconds_until(headers.get("retry-after"))
    if seconds is None or not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER_S)


def _seconds_until(http_date: str | None) -> float | None:
    if not http_date:
        return None
    try:
        when = email.utils.parsedate_to_datetime(http_date)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (when - datetime.now(UTC)).total_seconds()


@dataclass(frozen=True, slots=True)
class ProviderFaults:
    """Builds the domain error for every way a provider call can fail, for one adapter.

    ``endpoint`` (already stripped by :func:`public_url`) and ``setting`` (the variable that
    holds it) are named when the server cannot be reached, so the fix is obvious; the
    endpoint is also kept in ``extra["url"]`` so API clients are shown the detail without it.
    The vendor's own message is kept in ``extra["vendor_message"]`` for logs, never in the
    detail shown to API clients.
    """

    sdk: Any
    sdk_error: type[Exception]
    http: Any
    provider: str
    model: str
    timeout_s: float
    endpoint: str
    setting: str
    port: str = "LLM"
    """What the provider serves here, for messages: ``LLM`` or ``embeddings``."""

    @property
    def catchable(self) -> tuple[type[BaseException], ...]:
        """What an SDK call may raise that :meth:`translate` knows: the SDK's errors, raw
        HTTP errors it lets through, and ``ValueError`` (a body that is not JSON, or JSON that
        does not validate)."""
        return (self.sdk_error, self.http.HTTPError, ValueError)

    def translate(self, exc: BaseException, *, streaming: bool = False) -> ProviderError:
        """Map an SDK error (or a raw HTTP error an SDK let through) to a domain error.

        ``streaming``: the response had started; a broken connection then cut the answer
        rather than failing to reach the server.
        """
        if isinstance(exc, self.sdk.APITimeoutError | self.http.TimeoutException):
            return self.timed_out()
        if isinstance(exc, self.sdk.APIConnectionError | self.http.TransportError):
            if streaming:
                return self.cut(vendor_message=_vendor(exc))
            return ProviderUnavailable(
                f"{self._server} at {self.endpoint} is not reachable ({self.setting})",
                **self._about(),
            )
        if isinstance(exc, self.sdk.APIResponseValidationError | ValueError):
            return self.malformed("its body is not the JSON the API defines", exc)
        if isinstance(exc, self.sdk.APIStatusError):
            return self._status_error(exc, streaming=streaming)
        return ProviderError(
            f"{self.provider} failed: {type(exc).__name__}",
            provider=self.provider,
            model=self.model,
            vendor_message=_vendor(exc),
        )

    def timed_out(self) -> ProviderTimeout:
        """The call's deadline passed (all attempts and waits included)."""
        return ProviderTimeout(
            f"{self._server} at {self.endpoint} did not answer within {self.timeout_s:g}s",
            **self._about(),
        )

    def malformed(self, why: str, exc: BaseException | None = None) -> ProviderMalformedResponse:
        """The server answered, but not in the API's format."""
        return ProviderMalformedResponse(
            f"{self._server} at {self.endpoint} sent a malformed response: {why}",
            vendor_message=_vendor(exc) if exc is not None else None,
            **self._about(),
        )

    def empty(self) -> ProviderEmptyResponse:
        """The server finished without any text."""
        return ProviderEmptyResponse(
            f"{self._server} at {self.endpoint} returned an empty answer", **self._about()
        )

    def cut(self, *, vendor_message: str | None = None) -> ProviderStreamCut:
        """The stream ended before its final event."""
        return ProviderStreamCut(
            f"{self._server} at {self.endpoint} closed the stream before the answer was complete",
            vendor_message=vendor_message,
            **self._about(),
        )

    def _status_error(self, exc: Any, *, streaming: bool) -> ProviderError:
        status = int(exc.status_code)
        response = getattr(exc, "response", None)
        wait = retry_after_s(getattr(response, "headers", None))
        about = {**self._about(), "status": status, "vendor_message": _vendor(exc)}
        if wait is not None:
            about["upstream_wait_s"] = wait  # read by the retry policy
        if status == 429:
            return ProviderRateLimited(
                f"{self._server} at {self.endpoint} is rate limiting requests (HTTP 429)",
                retry_after_s=math.ceil(wait) if wait is not None else None,
                **about,
            )
        if streaming and status < 400:  # an error event inside a stream that had started
            return ProviderError(
                f"{self._server} at {self.endpoint} reported an error mid-stream", **about
            )
        return ProviderError(f"{self._server} at {self.endpoint} returned HTTP {status}", **about)

    @property
    def _server(self) -> str:
        return f"{self.provider} {self.port}"

    def _about(self) -> dict[str, Any]:
        return {"provider": self.provider, "model": self.model, "url": self.endpoint}


def _vendor(exc: BaseException) -> str:
    return str(exc)[:_VENDOR_MESSAGE_CHARS]
