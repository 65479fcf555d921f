"""Domain errors → RFC 9457 problem+json, mapped in one place."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

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
    429: "Too Many Requests",
    404: "Not Found",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
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
            problem(status, code=exc.code, detail=exc.detail, field=exc.extra.get("field")),
            request,
        )
        if isinstance(exc, errors.Unauthenticated):
            response.headers["WWW-Authenticate"] = 'Bearer realm="parley"'
        elif isinstance(exc, errors.TooManyRequests):
            response.headers.update(exc.headers)
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        issues: list[dict[str, Any]] = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        detail = "invalid request"
        if issues:
            loc, msg = ".".join(issues[0]["loc"]), str(issues[0]["msg"])
            detail = f"{loc}: {msg}" if loc else msg
        return problem_response(
            422, problem(422, code="invalid_input", detail=detail, errors=issues), request
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        response = problem_response(
            exc.status_code,
            problem(exc.status_code, code=code, detail=f"{exc.detail}", title=None),
            request,
        )
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled_error", error_type=type(exc).__name__)
        return problem_response(
            500,
            problem(500, code="internal_error", detail="an unexpected error occurred"),
            request,
        )
