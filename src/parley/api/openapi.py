"""The OpenAPI document, truthful about errors: every error is a ``Problem`` in
``application/problem+json``.

Routes declare what their own use case can answer with ``responses=problems(404, 409)``.
What the shared layers answer is added here, once, to every operation it applies to, so a
new route cannot forget it:

- every operation that needs credentials: 401 (authentication middleware), 403 (scope,
  role, dev mode's loopback rule) and 429 (rate limits), plus the ``bearer`` security;
- every operation with a request body: 413 (body limit), 415 (wrong Content-Type) and 422;
- every operation with parameters: 422, rendered by ``api/errors.py`` as problem+json
  (FastAPI's default ``HTTPValidationError`` JSON is never answered, so it is not shown).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI

from parley.api.errors import PROBLEM_JSON
from parley.api.schemas.problem import Problem

_REF = "#/components/schemas/"
PROBLEM_REF = {"$ref": f"{_REF}Problem"}

_WHEN: dict[int, str] = {
    400: "A body that could not be parsed (e.g. a malformed multipart form)",
    401: "Missing, malformed, expired or revoked credentials (`unauthenticated`)",
    403: "The credential lacks the role or key scope this needs (`forbidden`)",
    404: "Not found, or not yours (`not_found`)",
    409: "Conflicts with the current state, or a collection name is ambiguous (`conflict`)",
    413: "The request body or a file is over the size limit (`payload_too_large`)",
    415: "The body's Content-Type or a file's type is not accepted (`unsupported_media_type`)",
    422: "Invalid input (`invalid_input`, with `errors` when validation failed)",
    429: "Rate limit, account lockout or token quota; see `Retry-After`",
    502: "A model provider failed or sent an unusable answer (`provider_error`, ...)",
    503: "A model provider is unavailable or saturated (`provider_unavailable`, ...)",
    504: "A model provider did not answer in time (`provider_timeout`)",
}

_DESCRIPTION = (
    "Every error is `application/problem+json` (the `Problem` schema) with a stable `code`; "
    "each operation lists the statuses it can answer. Any operation may also answer 500 "
    "`internal_error` on an unexpected failure."
)

AUTHENTICATED = (401, 403, 429)
"""What every operation needing credentials may answer (added by :func:`install_openapi`)."""
WITH_BODY = (413, 415, 422)
"""What every operation taking a request body may answer (added by :func:`install_openapi`)."""
PROVIDERS = (502, 503, 504)
"""What an operation calling a model provider may answer."""


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries answering each status with a ``Problem``."""
    return {status: _problem_response(status) for status in statuses}


def _problem_response(status: int) -> dict[str, Any]:
    return {
        "description": _WHEN.get(status, "An error"),
        "content": {PROBLEM_JSON: {"schema": dict(PROBLEM_REF)}},
    }


def install_openapi(app: FastAPI, *, public_paths: Iterable[str]) -> None:
    """Complete the app's OpenAPI document (built once, on first request) as described above."""
    build: Callable[[], dict[str, Any]] = app.openapi
    public = frozenset(public_paths)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        document["info"].setdefault("description", _DESCRIPTION)
        components = document.setdefault("components", {})
        schemas = components.setdefault("schemas", {})
        # FastAPI's validation-error models only back the default 422, replaced below.
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        problem = Problem.model_json_schema(ref_template=_REF + "{model}")
        schemas.update(problem.pop("$defs", {}))
        schemas["Problem"] = problem
        components["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API key (pk_...) or an access token from /v1/auth/login",
            }
        }
        for path, operations in document.get("paths", {}).items():
            for operation in operations.values():
                _complete(operation, protected=path not in public)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _complete(operation: dict[str, Any], *, protected: bool) -> None:
    """Add what the shared layers answer to one operation."""
    responses: dict[str, Any] = operation.setdefault("responses", {})
    statuses: list[int] = []
    if protected:
        operation["security"] = [{"bearer": []}]
        statuses += AUTHENTICATED
    if "requestBody" in operation:
        statuses += WITH_BODY
    if operation.get("parameters"):
        statuses.append(422)
    for status in statuses:
        responses.setdefault(str(status), _problem_response(status))
    if "application/json" in responses.get("422", {}).get("content", {}):
        responses["422"] = _problem_response(422)  # FastAPI's default HTTPValidationError
    operation["responses"] = dict(sorted(responses.items()))
