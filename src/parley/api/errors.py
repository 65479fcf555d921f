"""Domain errors → RFC 9457 problem+json, mapped in one place.

Every error response of the API is ``application/problem+json`` with a stable ``code``:
domain errors, request validation, the router's own 404 / 405, and what the middlewares in
``api/middleware.py`` and ``api/security.py`` emit (they render through these handlers).
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request, params
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from parley import errors

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"

STATUS_BY_ERROR: dict[type[errors.ParleyError], int] = {
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.InvalidInput: 422,
    errors.PayloadTooLarge: 413,
    errors.UnsupportedMediaType: 415,
    errors.ParseError: 422,
    errors.ProviderTimeout: 504,
    errors.ProviderUnavailable: 503,
    # Not 429: the client did nothing wrong; the model behind us is saturated for a while.
    errors.ProviderRateLimited: 503,
    errors.ProviderMalformedResponse: 502,
    errors.ProviderEmptyResponse: 502,
    errors.ProviderStreamCut: 502,
    errors.ProviderError: 502,
    errors.ConfigurationError: 500,
    errors.Unauthenticated: 401,
    errors.Forbidden: 403,
    errors.TooManyRequests: 429,
}

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
}

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def problem(
    status: int, *, code: str, detail: str, title: str | None = None, **extra: Any
) -> dict[str, Any]:
    """A problem+json body with Parley's stable ``code``."""
    # A detail may echo caller text; an unpaired surrogate there could not be encoded.
    detail = detail.encode("utf-8", "backslashreplace").decode("utf-8")
    body: dict[str, Any] = {
        "type": f"https://parley.dev/problems/{code}",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def problem_response(
    status: int, body: dict[str, Any], request: Request | None = None
) -> JSONResponse:
    """Render a problem body; the request id is echoed so users can quote it."""
    if request is not None:
        rid = getattr(request.state, "request_id", None)
        if rid:
            body.setdefault("request_id", rid)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


# Extension members a domain error may add to its problem (anything else in ``extra`` stays
# server-side: it may hold values the caller must not see).
# ``message_id``: the stored question of a failed chat turn, to retry it by.
_PUBLIC_EXTRAS = ("field", "candidates", "message_id")

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_JSON_TYPES = ("application/json",)
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")


def status_for(exc: errors.ParleyError) -> int:
    """HTTP status for a domain error (most specific class wins)."""
    for cls in type(exc).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]
    return 500


def install_error_handlers(app: FastAPI) -> None:
    """Register the single mapping from exceptions to problem+json."""

    @app.exception_handler(errors.ParleyError)
    async def _domain(request: Request, exc: errors.ParleyError) -> JSONResponse:
        status = status_for(exc)
        if status >= 500:
            log.error("request_failed", code=exc.code, detail=exc.detail)
        response = problem_response(
            status,
            problem(
                status,
                code=exc.code,
                detail=exc.public_detail,
                **{k: exc.extra.get(k) for k in _PUBLIC_EXTRAS},
            ),
            request,
        )
        if isinstance(exc, errors.Unauthenticated):
            response.headers["WWW-Authenticate"] = 'Bearer realm="parley"'
        elif isinstance(exc, errors.TooManyRequests):
            response.headers.update(exc.headers)
            response.headers["Retry-After"] = str(exc.retry_after_s)
        elif isinstance(exc, errors.ProviderRateLimited) and exc.retry_after_s is not None:
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        expected = _unexpected_media_type(request)
        if expected is not None:
            sent = request.headers.get("content-type") or "none"
            wrong = f"this endpoint takes {expected}; the request's Content-Type is {sent}"
            return problem_response(
                415, problem(415, code="unsupported_media_type", detail=wrong[:300]), request
            )
        issues: list[dict[str, Any]] = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        detail = _json_syntax_detail(exc) or _first_issue(issues)
        return problem_response(
            422, problem(422, code="invalid_input", detail=detail, errors=issues), request
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        unreadable = _unreadable_json(request, exc)
        if unreadable is not None:
            return problem_response(
                422, problem(422, code="invalid_input", detail=unreadable), request
            )
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        response = problem_response(
            exc.status_code,
            problem(exc.status_code, code=code, detail=_http_detail(request, exc)),
            request,
        )
        if exc.headers:
            response.headers.update(exc.headers)
        if exc.status_code == 405:
            response.headers["Allow"] = _allowed_methods(request) or response.headers["Allow"]
        return response

    app.add_exception_handler(Exception, internal_error)


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """The 500 for an exception nothing else handled; logged here with its traceback."""
    log.exception("unhandled_error", error_type=type(exc).__name__)
    return problem_response(
        500, problem(500, code="internal_error", detail="an unexpected error occurred"), request
    )


def _allowed_methods(request: Request) -> str:
    """Every method the path accepts. Starlette's ``Allow`` names only the methods of the
    first route matching the path, while GET and POST of one path are two routes here."""
    allowed = [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.router.routes
        )
    ]
    return ", ".join(allowed)


def _http_detail(request: Request, exc: StarletteHTTPException) -> str:
    """A detail that tells a newcomer what to change; the router's own are a bare phrase."""
    path = request.url.path[:200]
    if exc.status_code == 404 and "route" not in request.scope:
        return f"no endpoint at {path}; the API is described at /docs"
    if exc.status_code == 405:
        allowed = _allowed_methods(request) or (exc.headers or {}).get("Allow", "")
        return f"{request.method} is not allowed on {path}; allowed: {allowed}"
    return f"{exc.detail}"


def _first_issue(issues: list[dict[str, Any]]) -> str:
    if not issues:
        return "invalid request"
    loc, msg = ".".join(issues[0]["loc"]), str(issues[0]["msg"])
    return f"{loc}: {msg}" if loc else msg


def _json_syntax_detail(exc: RequestValidationError) -> str | None:
    """``body is not valid JSON: <reason> at line L column C`` when the body did not parse."""
    for error in exc.errors():
        loc = tuple(error.get("loc", ()))
        if error.get("type") != "json_invalid" or loc[:1] != ("body",):
            continue
        reason = str((error.get("ctx") or {}).get("error") or "JSON decode error")
        pos = loc[1] if len(loc) == 2 and isinstance(loc[1], int) else None
        if pos is None or not isinstance(exc.body, str):
            return f"body is not valid JSON: {reason}"
        # As the json module counts them: lines and columns from 1.
        line = exc.body.count("\n", 0, pos) + 1
        column = pos - exc.body.rfind("\n", 0, pos)
        return f"body is not valid JSON: {reason} at line {line} column {column}"
    return None


def _unreadable_json(request: Request, exc: StarletteHTTPException) -> str | None:
    """``body is not valid JSON: …`` for FastAPI's bare 400 on a JSON body it could not read.

    FastAPI turns a syntax error into a validation error (422) but anything else its JSON
    decoding raises (bytes that are not UTF-8, nesting past the recursion limit) into a 400
    "There was an error parsing the body": a body that is not valid JSON either way, so it is
    answered the same. A form's 400 (a malformed multipart body) is left as it is.
    """
    cause = exc.__cause__
    body_field = getattr(request.scope.get("route"), "body_field", None)
    if exc.status_code != 400 or cause is None or body_field is None:
        return None
    if isinstance(body_field.field_info, params.Form):
        return None
    if isinstance(cause, UnicodeDecodeError):
        return "body is not valid JSON: it is not UTF-8 text"
    if isinstance(cause, RecursionError):
        return "body is not valid JSON: it is nested too deeply"
    return "body is not valid JSON"


def _unexpected_media_type(request: Request) -> str | None:
    """What the matched route's body must be, when the request sent a body of another type.

    FastAPI does not parse a JSON body declared as anything but JSON (nor a form declared as
    JSON), so the mismatch surfaces as a validation error; it deserves a 415 that says so.
    """
    body_field = getattr(request.scope.get("route"), "body_field", None)
    has_body = request.headers.get("content-length", "0") != "0" or (
        "transfer-encoding" in request.headers
    )
    if body_field is None or not has_body:
        return None
    sent = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if isinstance(body_field.field_info, params.Form):
        return None if sent in _FORM_TYPES else "multipart/form-data"
    is_json = sent in _JSON_TYPES or (sent.startswith("application/") and sent.endswith("+json"))
    return None if is_json else "a JSON body (Content-Type: application/json)"
