"""``parley eval --beir``: document-level metrics by query type, on the fake embedder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from parley.cli.main import app

runner = CliRunner()

DOCS = {
    "library/kettle.md": "# Kettles\n\nAn electric kettle boils water with a heating element.",
    "library/garden.md": "# Gardening\n\nTomatoes need full sun, water and a stake to climb.",
    "bikes.md": "# Bicycles\n\nInflate bicycle tyres to the pressure on the sidewall.",
}
QUERIES = [
    {
        "_id": "q1",
        "text": "electric kettle heating element",
        "metadata": {"type": "keyword", "answer_span": "Heating  Element"},
    },
    {
        "_id": "q2",
        "text": "tomatoes stake sun",
        "metadata": {"type": "keyword", "conversation_id": "c", "turn": 1},
    },
    {
        "_id": "q3",
        "text": "bicycle tyres pressure",
        "metadata": {"conversation_id": "c", "turn": 2},
    },
    {"_id": "q4", "text": "capital of the moon", "metadata": {"unanswerable": True}},
]
QRELS = "query-id\tcorpus-id\tscore\nq1\tlibrary/kettle.md\t2\nq2\tlibrary/garden.md\t1\n"
QRELS += "q3\tbikes.md\t1\n"


def _beir(folder: Path, *, corpus: bool = False) -> Path:
    (folder / "qrels").mkdir(parents=True)
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in QUERIES))
    (folder / "qrels" / "test.tsv").write_text(QRELS)
    if corpus:
        rows = [{"_id": name, "title": "", "text": text} for name, text in DOCS.items()]
        (folder / "corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_eval_beir_on_an_ingested_folder(env: Path, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    for name, text in DOCS.items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(text)
    assert runner.invoke(app, ["ingest", str(docs), "-c", "demo"]).exit_code == 0
    out = tmp_path / "report.json"
    beir = _beir(tmp_path / "beir")
    result = runner.invoke(app, ["eval", "-c", "demo", "--beir", str(beir), "--json", str(out)])
    assert result.exit_code == 0, result.output
    match = re.search(r"nDCG@10 = ([0-9.]+)", result.output)
    assert match is not None and 0.0 < float(match.group(1)) <= 1.0
    assert "groups: keyword, follow-up, unanswerable" in result.output
    assert "abstention: not measured by retrieval-only eval" in result.output
    report = json.loads(out.read_text())
    assert [g["group"] for g in report["groups"]] == ["keyword", "follow-up", "unanswerable"]
    assert report["overall"]["judged"] == 3 and report["unanswerable"] == 1
    assert report["overall"]["ndcg@10"] == pytest.approx(float(match.group(1)), abs=1e-3)
    assert report["groups"][0]["answer_span@10"] == 1.0  # keyword search finds the kettle


def test_eval_beir_can_ingest_its_corpus(env: Path, tmp_path: Path) -> None:
    beir = _beir(tmp_path / "beir", corpus=True)
    result = runner.invoke(app, ["eval", "-c", "bench", "--beir", str(beir), "--ingest"])
    assert result.exit_code == 0, result.output
    assert "corpus: 3 ingested, 0 unchanged, 0 failed" in result.output
    assert re.search(r"recall@10 = 1\.000", result.output), result.output


def test_questions_and_beir_are_exclusive(env: Path, tmp_path: Path) -> None:
    beir = _beir(tmp_path / "beir")
    questions = tmp_path / "q.json"
    questions.write_text("[]")
    args = ["eval", "-c", "x", "--beir", str(beir), "--questions", str(questions)]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "mutually exclusive" in result.output
