"""Structured logging (structlog → JSON lines), with the request id bound per request."""

from __future__ import annotations

import logging
import re
import sys
import threading
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import structlog
from structlog.types import EventDict, WrappedLogger


class _StderrHandler(logging.StreamHandler[Any]):
    """Writes to whatever ``sys.stderr`` is at emit time (it may be swapped, e.g. by tests)."""

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record to the current ``sys.stderr``."""
        self.stream = sys.stderr
        super().emit(record)


REDACTED = "[REDACTED]"

# Key names (lowercased, "-" read as "_") whose string values are never logged.
_SENSITIVE_KEY_PARTS = (
    "authorization",
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "cookie",
    "private_key",
    "encryption_key",
)
# Counts about tokens (input_tokens, token_count) and tokenizer names are not secrets.
_NOT_SENSITIVE_SUFFIXES = ("tokens", "token_count", "tokenizer")

_SECRET_NAMES = r"password|passwd|secret|token|api[_-]?key|private[_-]?key|encryption[_-]?key"
# One cheap search decides whether a string needs the scrubbers below at all: every
# scrubber's match contains one of these fragments.
_MAYBE_SECRET = re.compile(
    rf"{_SECRET_NAMES}|bearer|authorization|cookie|pk_|eyJ|sk-|://[^\s/@]*:", re.IGNORECASE
)
# Already-masked text (possibly behind a kept prefix) is matched whole so that masking
# twice cannot leave a stray bracket or split a value.
_MASKED = r"[\w-]{0,64}\[REDACTED\w*\]"
# key=value, key: value, "key": "value", 'key': 'value' (JSON, query strings, reprs); the
# name may end a longer one (access_token, db_password) but not continue (input_tokens).
_KEY_VALUE = re.compile(
    rf"""(?i)({_SECRET_NAMES})(["']?\s*[:=]\s*)"""
    rf"""("[^"]*"|'[^']*'|{_MASKED}|[^\s"'&,;}}\]]+)"""
)
# The scheme is kept ("Authorization: Basic [REDACTED]"); only known schemes are taken for
# one, so an unknown first word is treated as the credential itself.
_AUTH_HEADER = re.compile(
    r"""(?i)\b((?:proxy-)?authorization["']?\s*[:=]\s*["']?)"""
    r"""(?:(bearer|basic|digest|token|negotiate|ntlm|apikey|key|aws4-hmac-sha256)\s+)?"""
    rf"""(?:{_MASKED}|[^\s"',;}}]+)"""
)
_COOKIE_HEADER = re.compile(r"""(?i)\b((?:set-)?cookie["']?\s*[:=]\s*["']?)[^"'\r\n]+""")
_BEARER = re.compile(r"""(?i)\b(bearer)\s+(?!\[REDACTED)[^\s"',;]+""")
_URL_PASSWORD = re.compile(r"(://[^\s/@:]*:)[^\s/@]+@")
_PARLEY_KEY = re.compile(r"\bpk_([A-Za-z0-9]{8})_[A-Za-z0-9_-]{20,}(?![A-Za-z0-9_-])")
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*")
_OPENAI_KEY = re.compile(r"\bsk-[A-Za-z0-9_-]{16,}")


def _redact_key_value(match: re.Match[str]) -> str:
    value = match.group(3)
    quote = value[0] if value[:1] in ("'", '"') else ""
    return f"{match.group(1)}{match.group(2)}{quote}{REDACTED}{quote}"


def _redact_auth_header(match: re.Match[str]) -> str:
    scheme = f"{match.group(2)} " if match.group(2) else ""
    return f"{match.group(1)}{scheme}{REDACTED}"


# Token-shaped patterns run first so a key is masked whole (keeping its public prefix)
# wherever it appears; the name-based rules then mask whatever value follows a name.
_SCRUBBERS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    (_JWT, "[REDACTED_JWT]"),
    (_PARLEY_KEY, rf"pk_\1_{REDACTED}"),
    (_OPENAI_KEY, f"sk-{REDACTED}"),
    (_URL_PASSWORD, rf"\1{REDACTED}@"),
    (_AUTH_HEADER, _redact_auth_header),
    (_BEARER, rf"\1 {REDACTED}"),
    (_COOKIE_HEADER, rf"\1{REDACTED}"),
    (_KEY_VALUE, _redact_key_value),
)


def scrub_text(text: str) -> str:
    """``text`` with bearer tokens, API keys, JWTs, URL passwords and ``password=…`` masked."""
    if not _MAYBE_SECRET.search(text):
        return text
    for pattern, replacement in _SCRUBBERS:
        text = pattern.sub(replacement, text)
    return text


@lru_cache(maxsize=1024)
def _is_sensitive_key(key: str) -> bool:
    name = key.lower().replace("-", "_")
    if name.endswith(_NOT_SENSITIVE_SUFFIXES):
        return False
    return any(part in name for part in _SENSITIVE_KEY_PARTS)


def _is_sensitive_name(name: object) -> bool:
    if isinstance(name, bytes | bytearray):
        name = bytes(name).decode("latin-1")
    return isinstance(name, str) and _is_sensitive_key(name)


def _redact_value(value: Any, sensitive: bool) -> Any:
    # Containers are copied, never changed in place: they may be the caller's live objects
    # (a request's headers, say).
    if isinstance(value, str):
        return REDACTED if sensitive else scrub_text(value)
    if isinstance(value, bytes | bytearray):
        if sensitive:
            return REDACTED
        text = bytes(value).decode("latin-1")
        scrubbed = scrub_text(text)
        return value if scrubbed == text else scrubbed
    if isinstance(value, dict):
        return {k: _redact_value(v, sensitive or _is_sensitive_name(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        if len(value) == 2 and _is_sensitive_name(value[0]):
            # A (name, value) header pair, as in ASGI scopes and httpx's raw headers.
            items = [value[0], _redact_value(value[1], True)]
        else:
            items = [_redact_value(v, sensitive) for v in value]
        return items if isinstance(value, list) else tuple(items)
    return value  # numbers, None, and other objects the renderer formats itself


def redact_secrets(logger: WrappedLogger, method_name: str, event_dict: EventDict) -> EventDict:
    """Structlog processor: mask secret-named fields and secrets embedded in any string."""
    for key, value in event_dict.items():
        if isinstance(value, str | bytes | bytearray | dict | list | tuple):
            event_dict[key] = _redact_value(value, _is_sensitive_name(key))
    return event_dict


class _StderrLogger:
    """Prints each line to whatever ``sys.stderr`` is when the line is emitted.

    structlog's PrintLogger keeps the stream it was made with; a logger cached during a
    command run with a swapped stderr (a test runner's capture) would write to a closed file.
    """

    _lock = threading.Lock()

    def msg(self, message: str) -> None:
        """Write one rendered line."""
        with self._lock:
            print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


_STDERR_LOGGER = _StderrLogger()


def _stderr_logger(*_args: object) -> _StderrLogger:
    return _STDERR_LOGGER


# Libraries whose INFO lines are chatter to a user (Alembic announces every migration step,
# twice on a first start); they still log warnings, and everything at ``debug``.
_QUIET_LIBRARIES = ("alembic", "alembic.runtime.migration")


def configure_logging(*, level: str = "info", json: bool | None = True, cache: bool = True) -> None:
    """Route structlog and stdlib logging to stderr as JSON or console lines.

    ``json=None`` picks console lines when stderr is a terminal and JSON otherwise. ``cache``
    binds loggers on first use (fastest); commands that may run with a swapped ``sys.stderr``
    pass False.
    """
    if json is None:
        json = not sys.stderr.isatty()
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    # Exceptions are rendered to text before redaction so secrets in their messages are
    # masked too (at the cost of the console renderer's coloured tracebacks).
    redacting: list[structlog.types.Processor] = [
        structlog.processors.format_exc_info,
        redact_secrets,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.StackInfoRenderer(),
            *redacting,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=cache,
    )
    # Libraries that log through the stdlib (uvicorn, sqlalchemy) get the same format.
    handler = _StderrHandler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=[*shared, *redacting],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(
            numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
        )
    # pypdf reports recoverable quirks of damaged files as warnings; the outcome is logged.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    # Access lines are replaced by our own request log (with request id and timings).
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
