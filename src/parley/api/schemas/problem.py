"""The body of every error response: an RFC 9457 problem (``application/problem+json``).

``api/errors.py`` renders these; this model only describes them in the OpenAPI document.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class ValidationIssue(BaseModel):
    """One reason a request failed validation."""

    loc: list[str] = Field(description='where, e.g. ["body", "email"] or ["query", "limit"]')
    msg: str
    type: str


class Problem(BaseModel):
    """An error: what went wrong (``detail``) and a stable ``code`` to branch on."""

    type: str = Field(description="https://parley.dev/problems/<code>")
    title: str = Field(description="the HTTP status phrase")
    status: int = Field(ge=400, le=599)
    detail: str = Field(description="what went wrong and, where it helps, what to change")
    code: str = Field(description="stable machine-readable code, e.g. not_found, rate_limited")
    request_id: str | None = Field(
        default=None, description="the X-Request-ID of the request, to quote when reporting"
    )
    errors: list[ValidationIssue] | None = Field(
        default=None, description="every validation issue (invalid_input from validation)"
    )
    field: str | None = Field(default=None, description="the input field at fault, if one is")
    candidates: list[str] | None = Field(
        default=None, description="ids a collection name matched (409 when it is ambiguous)"
    )
    message_id: int | None = Field(
        default=None,
        description="a failed chat turn's stored question: retry it with "
        "POST /v1/sessions/{session_id}/messages/{message_id}/retry",
    )
