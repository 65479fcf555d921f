"""Helpers shared by the adapters built on vendor SDKs (OpenAI, Anthropic)."""

from __future__ import annotations

import importlib
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from parley.errors import ProviderError, ProviderTimeout, ProviderUnavailable

# Proxies in front of an API may need no key, but the SDKs refuse to send without one.
PLACEHOLDER_KEY = "not-needed"
_VENDOR_MESSAGE_CHARS = 300


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


def translate_error(
    exc: Exception,
    *,
    sdk: Any,
    http: Any,
    provider: str,
    model: str,
    timeout_s: float,
    endpoint: str,
    setting: str,
) -> ProviderError:
    """Map an SDK error (or a raw HTTP error an SDK let through mid-stream) to a domain error.

    ``endpoint`` (already stripped by :func:`public_url`) and ``setting`` (the variable that
    holds it) are named when the server cannot be reached, so the fix is obvious. The
    vendor's own message is kept in ``extra["vendor_message"]`` for logs, never in the
    detail shown to API clients.
    """
    if isinstance(exc, sdk.APITimeoutError | http.TimeoutException):
        return ProviderTimeout(
            f"{provider} LLM at {endpoint} did not answer within {timeout_s:g}s",
            provider=provider,
            model=model,
            url=endpoint,
        )
    if isinstance(exc, sdk.APIConnectionError | http.TransportError):
        return ProviderUnavailable(
            f"{provider} LLM at {endpoint} is not reachable ({setting})",
            provider=provider,
            model=model,
            url=endpoint,
        )
    if isinstance(exc, sdk.APIStatusError):
        status = int(exc.status_code)
        return ProviderError(
            f"{provider} returned HTTP {status}",
            provider=provider,
            model=model,
            status=status,
            vendor_message=str(exc)[:_VENDOR_MESSAGE_CHARS],
        )
    return ProviderError(
        f"{provider} failed: {type(exc).__name__}",
        provider=provider,
        model=model,
        vendor_message=str(exc)[:_VENDOR_MESSAGE_CHARS],
    )
