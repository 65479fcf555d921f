"""The app's own pure ASGI middlewares (no per-request task spawn): request id and access
log, security headers, the request-size limit, the last-resort 500, and CORS whose
refusals are problem+json like every other error."""

from __future__ import annotations

import re
import time
import uuid

import structlog
from fastapi.middleware.cors import CORSMiddleware
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parley.api.errors import PROBLEM_JSON, internal_error, problem, problem_response

log = structlog.get_logger("parley.access")

_VALID_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContextMiddleware:
    """Binds a request id to every log line and returns it as ``X-Request-ID``.

    A client-supplied id is kept only if it is short and plain, so logs cannot be forged.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = None
        for key, value in scope.get("headers", ()):
            if key == b"x-request-id":
                incoming = value.decode("latin-1")
                break
        request_id = incoming if incoming and _VALID_ID.match(incoming) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                # Set by the rate-limit dependency: every limited response says where the
                # caller stands (a 429 already carries these from its error).
                decision = scope["state"].get("ratelimit")
                if decision is not None and status != 429:
                    headers.extend(
                        (
                            (b"ratelimit-limit", str(decision.limit).encode()),
                            (b"ratelimit-remaining", str(decision.remaining).encode()),
                            (b"ratelimit-reset", str(decision.reset_after_s).encode()),
                        )
                    )
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            log.info(
                "request",
                method=scope.get("method"),
                path=scope.get("path"),
                status=status,
                ms=round((time.perf_counter() - started) * 1000, 2),
            )


# Sent on every response. The built-in page uses only inline script and style of its own.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self' 'unsafe-inline'; "
        b"style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
    ),
)


class SecurityHeadersMiddleware:
    """Adds :data:`SECURITY_HEADERS` to every HTTP response (pure ASGI, no extra task)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                headers = list(message.get("headers", []))
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_wrapper)


class RequestTooLarge(HTTPException):
    """Raised by :class:`BodyLimitMiddleware`'s ``receive`` when a streamed body passes the
    limit. An ``HTTPException``, because FastAPI re-raises those from its body parsing
    (anything else there becomes a 400) and renders them through ``api/errors.py``."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds the {limit}-byte limit")


class BodyLimitMiddleware:
    """Caps the request body at ``max_bytes`` (``PARLEY_LIMITS__MAX_REQUEST_BYTES``).

    A declared ``Content-Length`` over the limit is refused before the app runs, without
    reading a byte (a client that sent ``Expect: 100-continue`` never uploads); a chunked
    body is counted as it streams and refused as soon as it passes the limit. Both answers
    are the same problem+json 413 ``payload_too_large``. Starlette's own limit (FastAPI's
    ``max_body_size``) is not used: it answers in plain text from outside every middleware,
    so its 413 had neither problem+json, request id nor security headers.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _too_large(RequestTooLarge(self.max_bytes), scope, send)
            return
        received = 0
        tracked = _TrackedSend(send)

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise RequestTooLarge(self.max_bytes)
            return message

        try:
            await self.app(scope, counted_receive, tracked)
        except RequestTooLarge as exc:
            # Usually rendered by the route's exception handling already; this covers a body
            # read outside a route. Once a response has started it cannot be replaced.
            if tracked.started:
                raise
            await _too_large(exc, scope, send)


class _TrackedSend:
    """``send`` that remembers whether the response has started (then it cannot be replaced)."""

    __slots__ = ("_send", "started")

    def __init__(self, send: Send) -> None:
        self._send = send
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


async def _too_large(exc: RequestTooLarge, scope: Scope, send: Send) -> None:
    request = Request(scope)  # no ``receive``: the body is never touched
    body = problem(exc.status_code, code="payload_too_large", detail=str(exc.detail))
    await problem_response(exc.status_code, body, request)(scope, _no_body, send)


async def _no_body() -> Message:
    return {"type": "http.disconnect"}


class UnhandledErrorMiddleware:
    """Turns an exception nothing else handled into the problem+json 500 of
    ``api/errors.py``, *inside* the request-id, security-header and CORS middlewares.

    Starlette renders such errors from its outermost layer, where those headers are never
    added. The exception is logged (with its traceback) by the handler and not re-raised:
    the client has its answer and the server has nothing left to do. An exception after the
    response started cannot be answered any more and is re-raised for the server.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tracked = _TrackedSend(send)
        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            if tracked.started:
                raise
            response = await internal_error(Request(scope), exc)
            await response(scope, _no_body, send)


class ProblemCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, except that a refused preflight is problem+json (``cors_refused``)
    instead of a plain-text 400, keeping the CORS headers Starlette computed."""

    def preflight_response(self, request_headers: Headers) -> Response:
        """The preflight answer; a refusal rendered as problem+json."""
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        text = bytes(response.body).decode("utf-8", "replace")
        refused = problem(response.status_code, code="cors_refused", detail=f"{text} for this API")
        headers = {
            k: v for k, v in response.headers.items() if k not in ("content-length", "content-type")
        }
        return JSONResponse(
            refused, status_code=response.status_code, headers=headers, media_type=PROBLEM_JSON
        )
