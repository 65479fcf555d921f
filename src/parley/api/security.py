"""Authentication, authorization and rate-limit dependencies for routes.

Every non-public route declares one of the ``*Actor`` dependencies below; the test suite
walks the app's route table to make sure none is left unprotected.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from parley.api.deps import get_container
from parley.container import Container
from parley.domain.auth import SCOPE_ADMIN, SCOPE_CHAT, SCOPE_INGEST, SYSTEM, Principal
from parley.errors import Forbidden, ParleyError, RateLimited, Unauthenticated
from parley.services.rate_limits import RateDecision

# Routes anyone may call (no credentials): liveness, readiness, the web page, API docs,
# the endpoints that exchange a password or refresh token for tokens, and the first-run
# signal the sign-in page reads (one boolean, nothing else).
PUBLIC_PATHS: frozenset[str] = frozenset(
    {
        "/",
        "/livez",
        "/readyz",
        "/docs",
        "/docs/oauth2-redirect",
        "/redoc",
        "/openapi.json",
        "/v1/auth/login",
        "/v1/auth/refresh",
        "/v1/auth/setup",
    }
)


# Per-request memos live in the request's own scope, not in ``scope["state"]``: that dict
# is copied from the lifespan state per request by servers (uvicorn), but some ASGI hosts
# (asgi-lifespan's LifespanManager, used by the tests) pass one shared dict to every
# request, which would hand one caller's principal to the next.
_PRINCIPAL = "parley.principal"
_CLIENT_IP = "parley.client_ip"


def route_path(scope: Scope) -> str:
    """The request path as the router sees it (without the ASGI ``root_path`` prefix)."""
    path: str = scope.get("path", "") or "/"
    root: str = scope.get("root_path", "") or ""
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :] or "/"
    return path


def is_public(path: str) -> bool:
    """Whether ``path`` may be called without credentials (see :data:`PUBLIC_PATHS`)."""
    return path in PUBLIC_PATHS


def is_loopback(host: str | None) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def client_ip(request: Request, trusted_proxies: list[str]) -> str:
    """The client's address; ``X-Forwarded-For`` only counts when sent by a trusted proxy.

    Otherwise anyone could rotate that header to escape per-IP limits.
    """
    cached: str | None = request.scope.get(_CLIENT_IP)
    if cached is not None:
        return cached
    peer = request.client.host if request.client else "unknown"
    ip = peer
    if trusted_proxies and peer in trusted_proxies:
        forwarded = request.headers.get("x-forwarded-for", "")
        # The right-most address not added by a trusted proxy is the real client.
        for hop in reversed([h.strip() for h in forwarded.split(",") if h.strip()]):
            if hop not in trusted_proxies:
                ip = hop[:64]
                break
    request.scope[_CLIENT_IP] = ip
    return ip


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise Unauthenticated("authentication required: send Authorization: Bearer <token-or-key>")
    scheme, _, credential = header.partition(" ")
    if scheme.lower() != "bearer" or not credential.strip():
        raise Unauthenticated("malformed Authorization header; expected 'Bearer <credential>'")
    return credential.strip()


async def authenticate(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer``; the system principal in dev mode."""
    cached: Principal | None = request.scope.get(_PRINCIPAL)
    if cached is not None:
        return cached
    container = get_container(request)
    if container.settings.auth == "off":
        # Dev mode serves local clients only, even if the process was bound more widely.
        if not is_loopback(request.client.host if request.client else None):
            raise Forbidden("local dev mode (PARLEY_AUTH=off) accepts loopback clients only")
        # A local reverse proxy or tunnel would make remote callers look local.
        if "x-forwarded-for" in request.headers or "forwarded" in request.headers:
            raise Forbidden("local dev mode (PARLEY_AUTH=off) refuses proxied requests")
        principal = SYSTEM
    else:
        principal = await container.auth.authenticate(_bearer(request))
    request.scope[_PRINCIPAL] = principal
    return principal


class AuthenticationMiddleware:
    """Authenticates every request to a non-public path *before* its body is read.

    FastAPI reads and parses the body (JSON, multipart uploads spooled to disk) before any
    dependency runs, so without this an anonymous client gets a 422 for a malformed body
    instead of a 401, and can make the server parse up to the body-size limit for nothing.
    This pure ASGI middleware fully verifies the credential (the same :func:`authenticate`
    the ``*Actor`` dependencies use) and keeps the principal in the request scope, where
    those dependencies pick it up without verifying twice; scopes, roles and rate limits
    stay with the dependencies. ``OPTIONS`` passes through for CORS preflight.

    Register it innermost (``add_middleware`` it *before* ``CORSMiddleware`` and the others)
    so its 401s carry CORS, security headers and the request id.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope.get("method") == "OPTIONS"
            or is_public(route_path(scope))
        ):
            await self.app(scope, receive, send)
            return
        request = Request(scope)  # no ``receive``: the body cannot be touched here
        try:
            await authenticate(request)
        except ParleyError as exc:
            handler = _handler_for(request, exc)
            if handler is None:
                raise
            response = await handler(request, exc)
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _handler_for(request: Request, exc: Exception) -> Callable[..., Awaitable[Any]] | None:
    # The app's own exception handler, so a 401 here renders exactly like one from a route.
    handlers = getattr(request.app, "exception_handlers", {})
    for cls in type(exc).__mro__:
        if cls in handlers:
            handler: Callable[..., Awaitable[Any]] = handlers[cls]
            return handler
    return None


async def enforce_rate(
    request: Request, container: Container, klass: str, *identities: str
) -> RateDecision:
    """Count this request in ``klass`` for ``identities`` and the client IP; 429 if over."""
    ip = client_ip(request, container.settings.security.trusted_proxies)
    decision = await container.rate_limits.hit(klass, *identities, f"ip:{ip}")
    if decision.limit:
        request.state.ratelimit = decision
    if not decision.allowed:
        raise RateLimited(
            f"too many {klass} requests; retry in {decision.retry_after_s} s",
            retry_after_s=decision.retry_after_s,
            headers=rate_headers(decision),
        )
    return decision


def rate_headers(decision: RateDecision) -> dict[str, str]:
    """The IETF ``RateLimit-*`` fields for a decision."""
    return {
        "RateLimit-Limit": str(decision.limit),
        "RateLimit-Remaining": str(decision.remaining),
        "RateLimit-Reset": str(decision.reset_after_s),
    }


def guard(
    scope: str | None, *, rate: str, admin: bool = False
) -> Callable[[Request], Awaitable[Principal]]:
    """A dependency: authenticate, require ``scope`` (and the admin role), rate-limit."""

    async def dependency(request: Request) -> Principal:
        principal = await authenticate(request)
        if admin and not principal.is_admin:
            raise Forbidden("this endpoint is for admins (admin role and 'admin' key scope)")
        if scope is not None and not principal.has(scope):
            raise Forbidden(f"this credential lacks the '{scope}' scope")
        await enforce_rate(request, get_container(request), rate, principal.subject)
        return principal

    dependency.__name__ = f"require_{scope or 'auth'}_{rate}"
    return dependency


AnyActor = Annotated[Principal, Depends(guard(None, rate="read"))]
"""Any authenticated caller (reading resources, their own account)."""
ChatActor = Annotated[Principal, Depends(guard(SCOPE_CHAT, rate="chat"))]
IngestActor = Annotated[Principal, Depends(guard(SCOPE_INGEST, rate="ingest"))]
AdminActor = Annotated[Principal, Depends(guard(SCOPE_ADMIN, rate="admin", admin=True))]
