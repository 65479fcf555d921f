"""``@audited``: the one mechanism that writes admin and sharing actions to the audit log.

Applied to a route, it records the action after the route succeeded, with the actor, the
target, the client IP and the request id. Routes do not call the audit service themselves.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

import structlog
from fastapi import Request

from parley.api.security import authenticate, client_ip
from parley.services.audit import AuditEvent

log = structlog.get_logger(__name__)
P = ParamSpec("P")
R = TypeVar("R")
Target = Callable[[dict[str, Any], Any], str | None]


def path_param(name: str) -> Target:
    """Target id taken from a path parameter."""
    return lambda params, _result: str(params.get(name)) if params.get(name) else None


def result_attr(name: str) -> Target:
    """Target id taken from the route's result."""
    return lambda _params, result: str(getattr(result, name, None) or "") or None


def audited(
    action: str,
    *,
    target_type: str,
    target: Target,
    detail: Callable[[dict[str, Any], Any], dict[str, Any]] | None = None,
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
    """Record ``action`` in the audit log each time the decorated route succeeds."""

    def decorate(endpoint: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
        # FastAPI reads the signature; resolve string annotations against the route's own
        # module, then add a ``request`` parameter the wrapper needs, unless the route has
        # one already (FastAPI fills only one ``Request`` parameter per endpoint).
        hints = typing.get_type_hints(endpoint, include_extras=True)
        sig = inspect.signature(endpoint)
        params = [
            p.replace(annotation=hints.get(p.name, p.annotation)) for p in sig.parameters.values()
        ]
        own = next((p.name for p in params if p.annotation is Request), None)
        if own is None:
            params.append(
                inspect.Parameter(
                    "_audit_request", inspect.Parameter.KEYWORD_ONLY, annotation=Request
                )
            )

        @functools.wraps(endpoint)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if own is None:
                request = typing.cast(Request, kwargs.pop("_audit_request"))
            else:
                request = typing.cast(Request, kwargs[own])
            result = await endpoint(*args, **kwargs)
            container = request.app.state.container
            actor = await authenticate(request)
            event = AuditEvent(
                action=action,
                actor=actor,
                target_type=target_type,
                target_id=target(dict(kwargs), result),
                ip=client_ip(request, container.settings.security.trusted_proxies),
                request_id=getattr(request.state, "request_id", None),
                detail=detail(dict(kwargs), result) if detail is not None else {},
            )
            try:
                await container.audit.record(event)
            except Exception:
                # The action is committed: a 500 now would invite a retry of something that
                # happened. The record goes to the error log instead (log shipping keeps it).
                log.exception(
                    "audit_write_failed",
                    action=event.action,
                    actor_id=actor.user_id,
                    target_type=event.target_type,
                    target_id=event.target_id,
                    ip=event.ip,
                )
            return result

        wrapper.__signature__ = sig.replace(  # type: ignore[attr-defined]
            parameters=params, return_annotation=hints.get("return", sig.return_annotation)
        )
        del wrapper.__wrapped__  # FastAPI must see the new signature
        return wrapper

    return decorate
