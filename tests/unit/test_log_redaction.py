"""Log redaction: secrets never reach the log output, whichever way they are logged."""

from __future__ import annotations

import json
import logging

import pytest
import structlog

from parley.logging import configure_logging, redact_secrets, scrub_text

BEARER = "abc.def.ghi-bearer-value"
PASSWORD = "hunter2-correct-horse"
PARLEY_KEY = "pk_AbCd1234_s3cretPartOfTheKey0123456789"
OPENAI_KEY = "sk-proj-0123456789abcdefXYZ"
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1c2VyLTEifQ.c2lnbmF0dXJlLXZhbHVl"
COOKIE = "session=cookie-value-42"
DB_PASSWORD = "db-pass-99"
SECRETS = (
    BEARER,
    PASSWORD,
    PARLEY_KEY,
    "s3cretPartOfTheKey",
    OPENAI_KEY,
    "0123456789abcdefXYZ",
    JWT,
    "c2lnbmF0dXJlLXZhbHVl",
    "cookie-value-42",
    DB_PASSWORD,
)


def log_lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def assert_no_secret(err: str) -> None:
    for secret in SECRETS:
        assert secret not in err, f"{secret!r} leaked into the log"


@pytest.fixture
def err_after_logging(capsys: pytest.CaptureFixture[str]) -> str:
    configure_logging(json=True, cache=False)
    capsys.readouterr()
    log = structlog.get_logger("test")
    log.info(
        "login attempt",
        password=PASSWORD,
        headers={"Authorization": f"Bearer {BEARER}", "Cookie": COOKIE, "accept": "text/html"},
        input_tokens=5,
        output_tokens=7,
        user="alice",
    )
    log.info(f"created key {PARLEY_KEY}", api_key=PARLEY_KEY)
    log.warning("provider refused", error=f"invalid key {OPENAI_KEY}", raw=[("cookie", COOKIE)])
    log.info("token seen", detail=f"got {JWT} from client", token_count=3)
    log.info("db", url=f"postgresql+asyncpg://parley:{DB_PASSWORD}@127.0.0.1/parley")
    try:
        raise ValueError(f"rejected {OPENAI_KEY} with Authorization: Bearer {BEARER}")
    except ValueError:
        log.exception("call failed")
    std = logging.getLogger("x")
    std.warning("Authorization: Bearer %s", BEARER)
    std.warning('payload {"password": "%s", "email": "a@b.c"}', PASSWORD)
    try:
        raise RuntimeError(f"key {PARLEY_KEY} and jwt {JWT}")
    except RuntimeError:
        std.exception("stdlib failure")
    return capsys.readouterr().err


def test_no_secret_reaches_the_output(err_after_logging: str) -> None:
    assert_no_secret(err_after_logging)
    assert len(log_lines(err_after_logging)) == 9


def test_structure_and_harmless_values_survive(err_after_logging: str) -> None:
    lines = log_lines(err_after_logging)
    login = lines[0]
    assert login["event"] == "login attempt"
    assert login["password"] == "[REDACTED]"
    assert login["headers"] == {
        "Authorization": "[REDACTED]",
        "Cookie": "[REDACTED]",
        "accept": "text/html",
    }
    assert login["input_tokens"] == 5
    assert login["output_tokens"] == 7
    assert login["user"] == "alice"
    assert lines[1]["event"] == "created key pk_AbCd1234_[REDACTED]"
    assert lines[2]["error"] == "invalid key sk-[REDACTED]"
    assert lines[2]["raw"] == [["cookie", "[REDACTED]"]]
    assert lines[3]["detail"] == "got [REDACTED_JWT] from client"
    assert lines[3]["token_count"] == 3
    assert lines[4]["url"] == "postgresql+asyncpg://parley:[REDACTED]@127.0.0.1/parley"


def test_exceptions_are_rendered_and_scrubbed(err_after_logging: str) -> None:
    lines = log_lines(err_after_logging)
    structlog_exc = next(line for line in lines if line["event"] == "call failed")
    stdlib_exc = next(line for line in lines if line["event"] == "stdlib failure")
    assert "ValueError: rejected sk-[REDACTED]" in str(structlog_exc["exception"])
    assert "Bearer [REDACTED]" in str(structlog_exc["exception"])
    assert "RuntimeError: key pk_AbCd1234_[REDACTED]" in str(stdlib_exc["exception"])
    assert "[REDACTED_JWT]" in str(stdlib_exc["exception"])


def test_stdlib_messages_are_scrubbed(err_after_logging: str) -> None:
    events = [line["event"] for line in log_lines(err_after_logging)]
    assert "Authorization: Bearer [REDACTED]" in events
    assert 'payload {"password": "[REDACTED]", "email": "a@b.c"}' in events


def test_console_output_is_scrubbed_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json=False, cache=False)
    capsys.readouterr()
    structlog.get_logger("test").info("login", password=PASSWORD, note=f"Bearer {BEARER}")
    logging.getLogger("x").warning("key %s", OPENAI_KEY)
    assert_no_secret(capsys.readouterr().err)


def test_callers_objects_are_not_modified() -> None:
    headers = {"authorization": f"Bearer {BEARER}"}
    pairs = [(b"authorization", f"Bearer {BEARER}".encode())]
    event = redact_secrets(None, "info", {"event": "x", "headers": headers, "scope": pairs})
    assert event["headers"] == {"authorization": "[REDACTED]"}
    assert event["scope"] == [(b"authorization", "[REDACTED]")]
    assert headers == {"authorization": f"Bearer {BEARER}"}
    assert pairs == [(b"authorization", f"Bearer {BEARER}".encode())]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Basic dXNlcjpwYXNz", "Authorization: Basic [REDACTED]"),
        ("GET /v1/x?access_token=abc123&y=2", "GET /v1/x?access_token=[REDACTED]&y=2"),
        ("login password=hunter2 user=bob", "login password=[REDACTED] user=bob"),
        ("{'password': 'a b c', 'x': 1}", "{'password': '[REDACTED]', 'x': 1}"),
        ("api_key=sk-abcdefghijklmnopqrstu done", "api_key=[REDACTED] done"),
        ("Set-Cookie: sid=abc; HttpOnly", "Set-Cookie: [REDACTED]"),
        (
            "input_tokens=5 max_tokens: 9 token_count=3",
            "input_tokens=5 max_tokens: 9 token_count=3",
        ),
        ("password_min_chars=12", "password_min_chars=12"),
        ("plain message", "plain message"),
    ],
)
def test_scrub_text(text: str, expected: str) -> None:
    assert scrub_text(text) == expected


def test_token_counts_and_tokenizer_names_are_kept() -> None:
    event = redact_secrets(
        None,
        "info",
        {"event": "x", "input_tokens": 5, "max_tokens": "800", "tokenizer": "local", "token": "t"},
    )
    assert event == {
        "event": "x",
        "input_tokens": 5,
        "max_tokens": "800",
        "tokenizer": "local",
        "token": "[REDACTED]",
    }
