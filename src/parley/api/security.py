"""Authentication, authorization and rate-limit dependencies for routes.

Every non-public route declares one of the ``*Actor`` dependencies below; the test suite
walks the app's route table to make sure none is left unprotected.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from parley.api.deps import get_container
from parley.container import Container
from parley.domain.auth import SCOPE_ADMIN, SCOPE_CHAT, SCOPE_INGEST, SYSTEM, Principal
from parley.errors import Forbidden, RateLimited, Unauthenticated
from parley.services.rate_limits import RateDecision

# Routes anyone may call (no credentials): liveness, readiness, the web page, API docs and
# the endpoints that exchange a password or refresh token for tokens.
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
    }
)


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
    cached: str | None = getattr(request.state, "client_ip", None)
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
    request.state.client_ip = ip
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
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    container = get_container(request)
    if container.settings.auth == "off":
        # Dev mode serves local clients only, even if the process was bound more widely.
        if not is_loopback(request.client.host if request.client else None):
            raise Forbidden("local dev mode (PARLEY_AUTH=off) accepts loopback clients only")
        principal = SYSTEM
    else:
        principal = await container.auth.authenticate(_bearer(request))
    request.state.principal = principal
    return principal


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
