"""Authentication, authorization and rate-limit dependencies for routes.

Every non-public route declares one of the ``*Actor`` dependencies below; the test suite
walks the app's route table to make sure none is left unprotected.
"""

from __future__ import annotations

import functools
import ipaddress
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from parley.api.deps import get_container
from parley.container import Container
from parley.domain.auth import SCOPE_ADMIN, SCOPE_CHAT, SCOPE_INGEST, SYSTEM, Principal
from parley.errors import Forbidden, ParleyError, RateLimited, Unauthenticated
from parley.services.rate_limits import RateDecision

log = structlog.get_logger(__name__)

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


# Headers by which a proxy (or anyone pretending to be one) describes the original request.
# Parley believes X-Forwarded-For only from PARLEY_SECURITY__TRUSTED_PROXIES and reads none
# of the others; local dev mode refuses requests carrying any of them.
FORWARDING_HEADERS: tuple[str, ...] = (
    "x-forwarded-for",
    "forwarded",
    "x-real-ip",
    "x-forwarded-host",
    "x-forwarded-proto",
)

UNVERIFIED = "unverified"
"""The client address when the server rewrote the peer address itself (see below)."""

_REWRITE_WARNING_EVERY_S = 60.0
_last_rewrite_warning = 0.0


def client_ip(request: Request, trusted_proxies: Sequence[str]) -> str:
    """The client's address: the one rule behind per-IP rate limits, the audit log and the
    dev-mode loopback check.

    It is the TCP peer (``scope["client"]``), unless the peer is a trusted proxy (an address
    or network in ``trusted_proxies``): then it is the right-most ``X-Forwarded-For`` hop
    that is not a trusted proxy. Otherwise anyone could rotate that header to escape per-IP
    limits. No other forwarding header (``Forwarded``, ``X-Real-IP``...) is read.

    A server that applies proxy headers itself (uvicorn's default ``--proxy-headers``, which
    trusts any loopback peer) replaces the peer with a forwarded hop before Parley sees it,
    and the real peer is lost. That is recognized (the "peer" is one of the forwarded hops,
    port included, which a real TCP peer never is) and such requests all share the address
    :data:`UNVERIFIED`, so rotating the header gains nothing; a warning says what to fix.
    """
    cached: str | None = request.scope.get(_CLIENT_IP)
    if cached is not None:
        return cached
    client = request.scope.get("client")
    peer = str(client[0]) if client else "unknown"
    hops = _forwarded_hops(request.headers)
    if client and (peer, _port(client)) in hops:
        ip = UNVERIFIED
        _warn_rewritten(peer)
    else:
        ip = peer
        if _trusted(peer, tuple(trusted_proxies)):
            # The right-most address not added by a trusted proxy is the real client.
            for hop in reversed(request.headers.get("x-forwarded-for", "").split(",")):
                address = hop.strip()
                if address and not _trusted(address, tuple(trusted_proxies)):
                    ip = address[:64]
                    break
    request.scope[_CLIENT_IP] = ip
    return ip


def _port(client: Sequence[Any]) -> int:
    try:
        return int(client[1])
    except (IndexError, TypeError, ValueError):
        return 0


def _forwarded_hops(headers: Headers) -> set[tuple[str, int]]:
    """(host, port) of every hop named by X-Forwarded-For or Forwarded (port 0 if none), as
    a server's proxy-header support would parse them into ``scope["client"]``."""
    values = ",".join(headers.getlist("x-forwarded-for")).split(",")
    # Forwarded: elements separated by commas, pairs by semicolons; only ``for=`` names a hop.
    for pair in ",".join(headers.getlist("forwarded")).replace(",", ";").split(";"):
        name, _, value = pair.strip().partition("=")
        if name.strip().lower() == "for":
            values.append(value.strip().strip('"'))
    return {_host_port(v.strip()) for v in values if v.strip()}


def _host_port(value: str) -> tuple[str, int]:
    if value.startswith("["):  # [v6]:port
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:  # v4:port
        host, _, port = value.partition(":")
    else:
        host, port = value, ""
    return host, int(port) if port.isdigit() else 0


@functools.lru_cache(maxsize=64)
def _networks(
    trusted_proxies: tuple[str, ...],
) -> tuple[frozenset[str], tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]]:
    literals: set[str] = set()
    networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for entry in trusted_proxies:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            literals.add(entry.strip())
    return frozenset(literals), tuple(networks)


def _trusted(host: str, trusted_proxies: tuple[str, ...]) -> bool:
    """Whether ``host`` is one of the trusted proxies (an address, a network in CIDR
    notation, or another literal such as a unix socket name)."""
    if not trusted_proxies:
        return False
    literals, networks = _networks(trusted_proxies)
    if host in literals:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return any(address in network for network in networks)


def _warn_rewritten(peer: str) -> None:
    global _last_rewrite_warning
    now = time.monotonic()
    if now - _last_rewrite_warning < _REWRITE_WARNING_EVERY_S:
        return
    _last_rewrite_warning = now
    log.warning(
        "client_address_rewritten_by_server",
        forwarded_address=peer[:64],
        detail="the server replaced the client address with an X-Forwarded-For hop, so the "
        "real peer is unknown; run it without proxy headers (parley serve does; uvicorn "
        "--no-proxy-headers) and list proxies in PARLEY_SECURITY__TRUSTED_PROXIES",
    )


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
        # A local reverse proxy or tunnel would make remote callers look local.
        if any(name in request.headers for name in FORWARDING_HEADERS):
            raise Forbidden("local dev mode (PARLEY_AUTH=off) refuses proxied requests")
        # Dev mode serves local clients only, even if the process was bound more widely.
        if not is_loopback(client_ip(request, container.settings.security.trusted_proxies)):
            raise Forbidden("local dev mode (PARLEY_AUTH=off) accepts loopback clients only")
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
