"""``parley ingest`` names each document by its path below the ingested folder."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from typer.testing import CliRunner

from parley.cli.main import app
from parley.cli.progress import upload_name

runner = CliRunner()


def _two_readmes(root: Path) -> Path:
    for folder, text in (
        ("alpha", "The alpha module installs with the alpha tool and a warm kettle."),
        ("beta", "The beta module installs with the beta tool and a cold kettle."),
    ):
        (root / folder).mkdir(parents=True)
        (root / folder / "README.md").write_text(f"# {folder.title()}\n\n{text}\n")
    return root


def _sources(env: Path) -> list[str]:
    with sqlite3.connect(env / "parley.db") as db:
        return sorted(r[0] for r in db.execute("SELECT source FROM documents"))


def test_same_named_files_in_subfolders_are_both_stored_and_cited(
    env: Path, tmp_path: Path
) -> None:
    folder = _two_readmes(tmp_path / "docs")
    first = runner.invoke(app, ["ingest", str(folder), "--collection", "docs"])
    assert first.exit_code == 0, first.output
    assert "2 ingested, 0 unchanged, 0 failed" in first.output
    assert _sources(env) == ["alpha/README.md", "beta/README.md"]

    again = runner.invoke(app, ["ingest", str(folder), "--collection", "docs"])
    assert again.exit_code == 0, again.output
    assert "0 ingested, 2 unchanged, 0 failed" in again.output

    asked = runner.invoke(app, ["ask", "How does the beta module install?", "-c", "docs"])
    assert asked.exit_code == 0, asked.output
    assert "beta/README.md" in asked.output.split("Sources", 1)[1]


def test_a_changed_file_replaces_only_its_own_document(env: Path, tmp_path: Path) -> None:
    folder = _two_readmes(tmp_path / "docs")
    assert runner.invoke(app, ["ingest", str(folder), "-c", "docs"]).exit_code == 0
    (folder / "beta" / "README.md").write_text("# Beta\n\nThe beta module now needs a lid.\n")
    result = runner.invoke(app, ["ingest", str(folder), "-c", "docs"])
    assert "1 ingested, 1 unchanged, 0 failed" in result.output
    assert _sources(env) == ["alpha/README.md", "beta/README.md"]


def test_a_single_file_is_named_by_its_file_name(env: Path, tmp_path: Path) -> None:
    folder = _two_readmes(tmp_path / "docs")
    result = runner.invoke(app, ["ingest", str(folder / "alpha" / "README.md"), "-c", "one"])
    assert result.exit_code == 0, result.output
    assert _sources(env) == ["README.md"]
    # The same file again (a base-name document, as rows stored before paths are) is found.
    again = runner.invoke(app, ["ingest", str(folder / "alpha" / "README.md"), "-c", "one"])
    assert "0 ingested, 1 unchanged" in again.output


def test_upload_name(tmp_path: Path) -> None:
    root = tmp_path / "docs"
    assert upload_name(root / "a" / "b" / "x.md", root) == "a/b/x.md"
    assert upload_name(root / "x.md", root) == "x.md"
    assert upload_name(root / "x.md", root / "x.md") == "x.md"  # the root is the file
    assert upload_name(tmp_path / "elsewhere.md", root) == "elsewhere.md"
    assert upload_name(Path("rel") / "x.md", Path("rel")) == "x.md"
