"""Domain errors. They carry a stable ``code`` and no HTTP; ``api/errors.py`` maps them once."""

from __future__ import annotations

from typing import Any


class ParleyError(Exception):
    """Base of every error Parley raises on purpose."""

    code: str = "internal_error"

    def __init__(self, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or self.__class__.__doc__ or self.code)
        self.detail = detail or (self.__class__.__doc__ or self.code).strip()
        self.extra = extra

    @property
    def public_detail(self) -> str:
        """The detail for API clients: without the internal ``url`` an operator's detail names.

        "openai LLM at http://10.0.0.5:11434/v1 is not reachable" helps whoever runs the server
        (logs, CLI) but would show every API user the internal network.
        """
        url = self.extra.get("url")
        return self.detail.replace(f" at {url}", "") if url else self.detail


class NotFound(ParleyError):
    """The requested resource does not exist."""

    code = "not_found"


class Conflict(ParleyError):
    """The request conflicts with the current state."""

    code = "conflict"


class InvalidInput(ParleyError):
    """The request is well-formed but its values are not acceptable."""

    code = "invalid_input"


class PayloadTooLarge(ParleyError):
    """The request body or an uploaded file is larger than allowed."""

    code = "payload_too_large"


class UnsupportedMediaType(ParleyError):
    """The uploaded file's type is not supported or does not match its content."""

    code = "unsupported_media_type"


class ParseError(ParleyError):
    """A document could not be parsed."""

    code = "parse_error"


class LimitExceeded(ParseError):
    """A file went over one of its ingestion budgets (``PARLEY_INGEST_LIMITS__*``).

    Only that file fails; its ``code`` names the kind of budget and the detail the setting.
    """

    code = "limit_exceeded"


class DocumentTooLarge(LimitExceeded):
    """Too much text, or too many pages, paragraphs, rows, values or elements in one file."""

    code = "document_too_large"


class TooManyChunks(LimitExceeded):
    """A file would make more sections or chunks than allowed."""

    code = "too_many_chunks"


class CsvRowTooWide(LimitExceeded):
    """A CSV row has more fields than allowed."""

    code = "csv_row_too_wide"


class NestingTooDeep(LimitExceeded):
    """HTML elements or JSON arrays/objects are nested deeper than allowed."""

    code = "nesting_too_deep"


class ParseTimeout(LimitExceeded):
    """Parsing and chunking one file took longer than allowed."""

    code = "parse_timeout"


class ParseMemoryExceeded(LimitExceeded):
    """Parsing one file needed more memory than its parser process may use."""

    code = "parse_memory_exceeded"


class ProviderError(ParleyError):
    """A model provider (LLM, embedder, reranker) failed."""

    code = "provider_error"


class ProviderTimeout(ProviderError):
    """A model provider did not answer in time."""

    code = "provider_timeout"


class ProviderUnavailable(ProviderError):
    """A model provider is not configured, not installed or not reachable."""

    code = "provider_unavailable"


class ProviderMalformedResponse(ProviderError):
    """A model provider answered, but not in its API's format (not JSON, or the wrong shape)."""

    code = "provider_malformed_response"


class ProviderEmptyResponse(ProviderError):
    """A model provider finished without producing any text."""

    code = "provider_empty_response"


class ProviderStreamCut(ProviderError):
    """A model provider's stream ended before its final event (connection closed mid-answer)."""

    code = "provider_stream_cut"


class ProviderRateLimited(ProviderError):
    """A model provider refused the request under its own rate limit.

    ``retry_after_s`` is the delay the provider asked for (None when it named none); it is
    passed on to the client as ``Retry-After``.
    """

    code = "provider_rate_limited"

    def __init__(self, detail: str = "", *, retry_after_s: int | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after_s = None if retry_after_s is None else max(1, int(retry_after_s))


class ConfigurationError(ParleyError):
    """The settings are inconsistent or refer to something missing."""

    code = "configuration_error"


class Unauthenticated(ParleyError):
    """Missing, malformed, expired, revoked or wrongly signed credentials."""

    code = "unauthenticated"


class Forbidden(ParleyError):
    """Authenticated, but not allowed to use this endpoint (role or key scope)."""

    code = "forbidden"


class TooManyRequests(ParleyError):
    """Base of the errors that tell the client to come back later.

    ``retry_after_s`` becomes the ``Retry-After`` header; ``headers`` adds the rest.
    """

    code = "rate_limited"

    def __init__(
        self,
        detail: str = "",
        *,
        retry_after_s: int = 1,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail, **extra)
        self.retry_after_s = max(1, int(retry_after_s))
        self.headers = dict(headers or {})


class RateLimited(TooManyRequests):
    """Too many requests in this class of endpoints; retry after the indicated delay."""

    code = "rate_limited"


class AccountLocked(TooManyRequests):
    """Too many failed logins for this account; it is locked for a while."""

    code = "account_locked"


class QuotaExceeded(TooManyRequests):
    """The user's daily or monthly token quota is used up."""

    code = "quota_exceeded"
