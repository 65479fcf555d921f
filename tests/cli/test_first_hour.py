"""A new user's first hour with the CLI: one clear line per mistake, the truth about ingests."""

from __future__ import annotations

import asyncio
import io
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from parley.cli.main import app
from parley.cli.progress import ingest_with_progress
from parley.container import Container
from parley.domain.auth import SYSTEM
from parley.services.ingestion import ItemOutcome
from parley.settings import Settings
from parley.version import package_version
from tests.conftest import DOCS

runner = CliRunner()
COMMANDS = ["serve", "worker", "ask", "chat", "eval", "config", "migrate", "ingest", "collections"]


def test_version_is_the_installed_distribution() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"parley {package_version()}"
    assert re.fullmatch(r"\d+\.\d+\.\d+\S*", package_version())


def test_help_is_shown_as_written() -> None:
    ask = runner.invoke(app, ["ask", "--help"])
    assert "with [n] citations" in ask.output  # not eaten as markup
    users = runner.invoke(app, ["users", "create", "--help"])
    assert "asked for (hidden, twice) when omitted" in users.output
    assert (
        "--password" in users.output
        and "[required]" not in users.output.split("--password")[1].split("\n")[0]
    )
    for command in [[], *([name] for name in COMMANDS), ["users", "create"], ["keys", "create"]]:
        shown = runner.invoke(app, [*command, "--help"])
        assert shown.exit_code == 0, command
        assert "``" not in shown.output, command


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        (
            "PARLEY_LLM__PROVIDER",
            "ollama",
            "invalid setting PARLEY_LLM__PROVIDER='ollama': Input should be 'extractive'",
        ),
        (
            "PARLEY_RATE_LIMITS__CHAT",
            "lots",
            "invalid setting PARLEY_RATE_LIMITS__CHAT='lots': invalid rate limit 'lots': "
            "expected 'N/unit' parts joined by ';'",
        ),
        ("PARLEY_SERVER__PORT", "99999", "invalid setting PARLEY_SERVER__PORT='99999'"),
    ],
)
def test_an_invalid_setting_is_one_line_and_exit_2(
    env: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    for command in (["serve"], ["collections"], ["ingest", str(DOCS), "-c", "d"], ["worker"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, (command, result.output)
        lines = result.output.strip().splitlines()
        assert lines[0].startswith(f"error: {expected}"), lines
        assert len(lines) == 2 and lines[1].startswith("hint: ")
        assert "Traceback" not in result.output
    assert not env.exists()


def test_ollama_as_a_provider_gets_the_openai_compatible_hint(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARLEY_LLM__PROVIDER", "ollama")
    result = runner.invoke(app, ["collections"])
    assert "hint: ollama speaks the OpenAI API: PARLEY_LLM__PROVIDER=openai" in result.output
    assert "PARLEY_LLM__BASE_URL=http://127.0.0.1:11434/v1" in result.output


def test_debug_shows_the_traceback(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_LLM__PROVIDER", "ollama")
    result = runner.invoke(app, ["--debug", "collections"])
    assert isinstance(result.exception, ValidationError)


def test_a_port_in_use_names_the_port_and_suggests_another(env: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "--port", str(port)])
    assert result.exit_code == 1, result.output
    assert f"error: 127.0.0.1:{port} is already in use" in result.output
    assert f"parley serve --port {port + 1}" in result.output


@pytest.mark.parametrize(
    "command",
    [
        ["ask", "hello?", "-c", "demo"],
        ["chat", "-c", "demo"],
        ["collections"],
        ["eval", "-c", "demo", "--questions", str(DOCS.parent / "questions.json")],
        ["users", "list"],
    ],
)
def test_read_only_commands_do_not_create_a_data_dir(env: Path, command: list[str]) -> None:
    result = runner.invoke(app, command)
    assert result.exit_code == 1, result.output
    assert f"no Parley data in {env} yet" in result.output
    assert "parley ingest PATH --collection NAME" in result.output
    assert not env.exists()


def test_collections_on_an_empty_database_says_how_to_start(env: Path) -> None:
    assert runner.invoke(app, ["migrate"]).exit_code == 0
    result = runner.invoke(app, ["collections"])
    assert result.exit_code == 0
    assert "no collections yet: parley ingest PATH --collection NAME" in result.output


def _mixed_folder(root: Path) -> Path:
    folder = root / "mixed"
    (folder / "sub").mkdir(parents=True)
    (folder / "guide.md").write_text("# Ferries\n\nThe ferry leaves at nine.")
    (folder / "notes.rst").write_text("Notes\n=====\n\nTickets are sold on board.")
    (folder / "sub" / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (folder / "archive.bin").write_bytes(bytes(range(256)) * 4)
    return folder


def test_a_folder_skips_what_parley_cannot_read_and_succeeds(env: Path, tmp_path: Path) -> None:
    folder = _mixed_folder(tmp_path)
    result = runner.invoke(app, ["ingest", str(folder), "--collection", "mixed"])
    assert result.exit_code == 0, result.output
    assert re.search(r"skipped \S*photo\.png: ", result.output)
    assert re.search(r"skipped \S*archive\.bin: ", result.output)
    assert "2 ingested, 0 unchanged, 0 failed, 2 skipped" in result.output


def test_naming_an_unreadable_file_is_an_error(env: Path, tmp_path: Path) -> None:
    folder = _mixed_folder(tmp_path)
    result = runner.invoke(app, ["ingest", str(folder / "sub" / "photo.png"), "-c", "mixed"])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: cannot ingest {folder / 'sub' / 'photo.png'}: ")
    assert not env.exists()


def test_a_folder_with_nothing_readable_fails(env: Path, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    result = runner.invoke(app, ["ingest", str(folder), "-c", "pics"])
    assert result.exit_code == 2
    assert "skipped" in result.output and f"no file Parley can read in {folder}" in result.output


def _many_files(root: Path, count: int) -> list[Path]:
    root.mkdir()
    files = []
    for n in range(count):
        path = root / f"note-{n:03}.txt"
        path.write_text(f"Note {n}. The harbour office opens at {n % 12 + 1} o'clock.")
        files.append(path)
    return files


async def test_ctrl_c_finishes_the_current_file_cancels_the_rest_and_rerun_continues(
    tmp_path: Path,
) -> None:
    from rich.console import Console

    settings = Settings(
        data_dir=tmp_path / "data",
        embeddings={"provider": "fake", "dimension": 64},
        chunking={"tokenizer": "approx"},
        limits={"max_files_per_request": 4},
    )
    files = _many_files(tmp_path / "notes", 10)
    out = Console(file=io.StringIO(), force_terminal=False)
    container = Container.build(settings)
    try:
        await container.prepare_database()
        view = await container.collections.get_or_create(actor=SYSTEM, name="notes")
        run_once = container.runner.run_once

        async def interrupt_after_first_file(**kwargs: object) -> str | None:
            progress = kwargs.pop("progress")
            assert callable(progress)

            def on_item(outcome: ItemOutcome) -> None:
                progress(outcome)
                if outcome.filename == "note-001.txt":
                    os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, to the loop's handler

            return await run_once(progress=on_item, **kwargs)  # type: ignore[arg-type]

        container.runner.run_once = interrupt_after_first_file  # type: ignore[method-assign]
        report = await ingest_with_progress(container, view.row.id, files, console=out)
        assert report.interrupted and not report.aborted
        # The signal is handled at the loop's next turn: the file in progress then
        # completes; the rest of the job is cancelled and no later batch is submitted.
        assert 2 <= report.counts["succeeded"] <= 4
        stored = report.counts["succeeded"]
        container.runner.run_once = run_once  # type: ignore[method-assign]
        again = await ingest_with_progress(container, view.row.id, files, console=out)
        assert not again.interrupted
        assert again.counts == {"succeeded": 10 - stored, "skipped": stored, "failed": 0}
    finally:
        await container.aclose()
        await asyncio.sleep(0)


def test_ctrl_c_in_a_real_process_tells_how_to_continue(env: Path, tmp_path: Path) -> None:
    _many_files(tmp_path / "notes", 400)
    proc = subprocess.Popen(
        [sys.executable, "-m", "parley", "ingest", str(tmp_path / "notes"), "-c", "notes"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    db = env / "parley.db"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if db.exists():
            try:
                with sqlite3.connect(db) as conn:
                    if conn.execute("select count(*) from documents").fetchone()[0] > 0:
                        break
            except sqlite3.OperationalError:
                pass  # not migrated yet, or locked for a write
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "Stopping after the file in progress" in output
    assert re.search(r"interrupted: \d+ of 400 files not ingested", output)
    assert "Run the same command again to continue" in output
