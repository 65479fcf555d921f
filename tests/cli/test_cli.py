"""The ``parley`` command line, end to end on a real SQLite file with the fake embedder."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from parley.cli.main import app
from tests.conftest import DOCS

runner = CliRunner()


def test_migrate_reports_the_head_revision(env: Path) -> None:
    result = runner.invoke(app, ["migrate"])
    assert result.exit_code == 0, result.output
    assert re.search(r"revision \w+ \(head \w+\)", result.output)
    assert (env / "parley.db").exists()


def test_ingest_ask_and_list(env: Path) -> None:
    result = runner.invoke(app, ["ingest", str(DOCS), "--collection", "demo"])
    assert result.exit_code == 0, result.output
    count = len(list(DOCS.iterdir()))
    assert f"{count} ingested, 0 unchanged, 0 failed" in result.output

    again = runner.invoke(app, ["ingest", str(DOCS), "--collection", "demo"])
    assert f"0 ingested, {count} unchanged, 0 failed" in again.output

    listed = runner.invoke(app, ["collections"])
    assert listed.exit_code == 0 and "demo" in listed.output

    asked = runner.invoke(
        app, ["ask", "What torque for the stem faceplate bolts?", "--collection", "demo"]
    )
    assert asked.exit_code == 0, asked.output
    assert "Extractive answer" in asked.output and "[1]" in asked.output
    assert "Sources" in asked.output and "service-manual.pdf" in asked.output
    assert "5 Nm" in asked.output


def test_ingest_reports_unsupported_and_broken_files(env: Path, tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.md").write_text("# Title\n\nSome useful text about ferries.")
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 nothing else")
    result = runner.invoke(app, ["ingest", str(folder), "--collection", "mixed"])
    assert result.exit_code == 2, result.output
    assert "skipped" in result.output and "image.png" in result.output
    assert "failed broken.pdf" in result.output
    assert "1 ingested" in result.output


def test_ask_unknown_collection_lists_the_existing_ones(env: Path) -> None:
    assert runner.invoke(app, ["ingest", str(DOCS), "--collection", "demo"]).exit_code == 0
    result = runner.invoke(app, ["ask", "anything", "--collection", "nope"])
    assert result.exit_code == 1
    assert "no collection named 'nope'; existing: demo" in result.output
    assert "parley ingest PATH --collection nope" in result.output


def test_chat_keeps_a_session(env: Path) -> None:
    runner.invoke(app, ["ingest", str(DOCS / "faq.json"), "--collection", "faq"])
    result = runner.invoke(
        app, ["chat", "--collection", "faq"], input="Is the bike waterproof?\nDoes it fold?\n\n"
    )
    assert result.exit_code == 0, result.output
    session_id = re.search(r"session (\w+)", result.output).group(1)  # type: ignore[union-attr]
    assert result.output.count("parley>") == 2 and "IPX5" in result.output
    resumed = runner.invoke(
        app, ["chat", "--collection", "faq", "--session", session_id], input="\n"
    )
    assert resumed.exit_code == 0 and session_id in resumed.output


def test_eval_reports_hit_rate_and_mrr(env: Path) -> None:
    runner.invoke(app, ["ingest", str(DOCS), "--collection", "demo"])
    questions = DOCS.parent / "questions.json"
    result = runner.invoke(app, ["eval", "-c", "demo", "--questions", str(questions)])
    assert result.exit_code == 0, result.output
    match = re.search(r"hit@5 = ([0-9.]+)\s+MRR = ([0-9.]+)", result.output)
    assert match is not None
    hit, mrr = float(match.group(1)), float(match.group(2))
    assert 0.5 <= hit <= 1.0 and 0.0 < mrr <= hit  # fake embedder: keyword search carries it
