"""What every ``parley`` command shares: settings read with one-line errors, the ``--debug``
switch, and running a coroutine with domain errors turned into one line and an exit code.

A new user's first contact with Parley is often a mistyped setting or a missing extra: those
end in a single line that names the setting, the value and what is allowed (exit 2), never a
traceback, unless ``parley --debug`` asks for one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape

from parley.container import Container
from parley.errors import ConfigurationError, ParleyError
from parley.logging import configure_logging
from parley.settings import Settings

T = TypeVar("T")

# Exit codes: 1 = the command failed (a domain error); 2 = the invocation or the
# configuration is wrong (click uses 2 for usage errors too).
EXIT_FAILED = 1
EXIT_CONFIG = 2

# soft_wrap: a message is one line whatever the terminal's width (or none, in a pipe), so
# paths and keys can be copied whole; the terminal wraps what it must.
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

# Servers people name as a provider that are reached through the OpenAI-compatible adapter.
_OPENAI_COMPATIBLE = {
    "ollama": "http://127.0.0.1:11434/v1",
    "vllm": "http://127.0.0.1:8000/v1",
    "llamacpp": "http://127.0.0.1:8080/v1",
    "llama.cpp": "http://127.0.0.1:8080/v1",
    "lmstudio": "http://127.0.0.1:1234/v1",
    "groq": "https://api.groq.com/openai/v1",
}


@dataclass(slots=True)
class CliState:
    """Options given before the command (``parley --debug serve``)."""

    debug: bool = False


STATE = CliState()


def fail(message: str, *, code: int = EXIT_FAILED, hint: str | None = None) -> NoReturn:
    """Print ``error: message`` (and an optional hint line) to stderr and exit with ``code``."""
    err.print(f"[red]error[/red]: {escape(message)}")
    if hint:
        err.print(f"[dim]hint[/dim]: {escape(hint)}")
    raise typer.Exit(code=code)


def env_name(loc: Iterable[int | str]) -> str:
    """The environment variable of a settings field from a validation error's ``loc``."""
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            break  # an item of a list setting: the variable is the list's
        parts.append(str(part).upper())
    return "PARLEY_" + "__".join(parts)


def settings_error_lines(exc: ValidationError) -> list[str]:
    """One line per invalid setting: its variable, the value given and what is allowed."""
    lines = []
    for issue in exc.errors(include_url=False):
        msg = str(issue.get("msg", "invalid"))
        msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
        given = issue.get("input")
        shown = given if isinstance(given, str | int | float | bool) else None
        value = f"={shown!r}" if shown is not None else ""
        lines.append(f"invalid setting {env_name(issue.get('loc', ()))}{value}: {msg}")
    return lines


def _settings_hint(exc: ValidationError) -> str:
    for issue in exc.errors(include_url=False):
        section = tuple(issue.get("loc", ()))[:1]
        given = str(issue.get("input", "")).strip().lower()
        if section in (("llm",), ("embeddings",)) and given in _OPENAI_COMPATIBLE:
            var = f"PARLEY_{section[0].upper()}"
            return (
                f"{given} speaks the OpenAI API: {var}__PROVIDER=openai "
                f"{var}__BASE_URL={_OPENAI_COMPATIBLE[given]}"
            )
    return "`parley config` lists every setting with its default and meaning"


def load_settings() -> Settings:
    """Read the settings from the environment and ``.env``; exit 2 with one line per error."""
    try:
        return Settings()
    except ValidationError as exc:
        if STATE.debug:
            raise
        for line in settings_error_lines(exc):
            err.print(f"[red]error[/red]: {escape(line)}")
        err.print(f"[dim]hint[/dim]: {escape(_settings_hint(exc))}")
        raise typer.Exit(code=EXIT_CONFIG) from None


def report(exc: ParleyError) -> NoReturn:
    """Exit with a domain error's one line (2 for configuration errors, else 1)."""
    if STATE.debug:
        raise exc
    if isinstance(exc, ConfigurationError):
        fail(exc.detail, code=EXIT_CONFIG)
    fail(f"{exc.detail} ({exc.code})")


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion; a domain error becomes one line and an exit code."""
    try:
        return asyncio.run(coro)
    except ParleyError as exc:
        report(exc)


def require_existing_database(settings: Settings) -> None:
    """Exit with a hint when a read-only command finds no embedded database.

    Reading must not create anything: without this check, ``parley ask`` on a fresh machine
    would make an empty data dir and database only to say "not found".
    """
    if settings.database_url:
        return  # an external database exists or fails with its own clear error
    path = settings.data_dir / "parley.db"
    if not path.exists():
        fail(
            f"no Parley data in {settings.data_dir} yet (PARLEY_DATA_DIR)",
            hint="ingest documents first: parley ingest PATH --collection NAME",
        )


@asynccontextmanager
async def open_container(
    settings: Settings, *, read_only: bool = False
) -> AsyncIterator[Container]:
    """A container on the configured database, migrated; closed on exit.

    CLI commands log only warnings: their output is the command's own.
    """
    if read_only:
        require_existing_database(settings)
    configure_logging(level="warning", json=False, cache=False)
    container = Container.build(settings)
    try:
        await container.prepare_database()
        yield container
    finally:
        await container.aclose()
