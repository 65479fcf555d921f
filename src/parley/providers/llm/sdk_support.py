"""Helpers shared by the adapters built on vendor SDKs (OpenAI, Anthropic)."""

from __future__ import annotations

import importlib
from typing import Any

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


def translate_error(
    exc: Exception, *, sdk: Any, http: Any, provider: str, model: str, timeout_s: float
) -> ProviderError:
    """Map an SDK error (or a raw HTTP error an SDK let through mid-stream) to a domain error.

    The vendor's own message is kept in ``extra["vendor_message"]`` for logs, never in the
    detail shown to API clients.
    """
    if isinstance(exc, sdk.APITimeoutError | http.TimeoutException):
        return ProviderTimeout(
            f"{provider} did not answer within {timeout_s:g}s", provider=provider, model=model
        )
    if isinstance(exc, sdk.APIConnectionError | http.TransportError):
        return ProviderUnavailable(f"{provider} is not reachable", provider=provider, model=model)
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
