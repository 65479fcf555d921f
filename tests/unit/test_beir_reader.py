"""Reading a BEIR-format folder: queries with Parley's labels, qrels, optional corpus."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from parley.errors import InvalidInput
from parley.services.beir import FOLLOW_UP, UNANSWERABLE, read_beir, read_corpus

QUERIES = [
    {
        "_id": "q1",
        "text": "how do kettles boil",
        "metadata": {"type": "paraphrase", "answer_span": "heating element"},
    },
    {"_id": "q2", "text": "tomato stake", "type": "keyword", "conversation_id": "c1", "turn": 1},
    {
        "_id": "q3",
        "text": "how often to water them",
        "metadata": {"type": "keyword", "conversation_id": "c1", "turn": 2},
    },
    {"_id": "q4", "text": "capital of the moon", "metadata": {"unanswerable": True}},
]
CORPUS = [
    {"_id": "kettle.md", "title": "Kettles", "text": "A heating element boils water."},
    {"_id": "garden.md", "title": "Garden", "text": "Tomatoes need a stake."},
    {"_id": "bikes.md", "text": "Inflate tyres."},
]


def _write(folder: Path, *, qrels_name: str = "qrels/test.tsv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in QUERIES) + "\n")
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in CORPUS) + "\n")
    qrels = folder / qrels_name
    qrels.parent.mkdir(exist_ok=True)
    qrels.write_text(
        "query-id\tcorpus-id\tscore\nq1\tkettle.md\t2\nq2\tgarden.md\t1\nq3\tgarden.md\t1\n"
        "q3\tbikes.md\t0\n"
    )
    return folder


def test_reads_queries_labels_and_qrels(tmp_path: Path) -> None:
    dataset = read_beir(_write(tmp_path / "set"))
    assert [q.id for q in dataset.queries] == ["q1", "q2", "q3", "q4"]
    q1, q2, q3, q4 = dataset.queries
    assert (q1.type, q1.answer_span, q1.group) == ("paraphrase", "heating element", "paraphrase")
    assert (q2.conversation_id, q2.turn, q2.group) == ("c1", 1, "keyword")
    assert (q3.conversation_id, q3.turn, q3.group) == ("c1", 2, FOLLOW_UP)
    assert q4.unanswerable and q4.group == UNANSWERABLE
    assert dataset.qrels == {
        "q1": {"kettle.md": 2},
        "q2": {"garden.md": 1},
        "q3": {"garden.md": 1, "bikes.md": 0},
    }
    assert dataset.corpus_path == tmp_path / "set" / "corpus.jsonl"
    docs = read_corpus(dataset.corpus_path)
    assert [(d.id, d.title) for d in docs] == [
        ("kettle.md", "Kettles"),
        ("garden.md", "Garden"),
        ("bikes.md", ""),
    ]


def test_accepts_a_top_level_qrels_file(tmp_path: Path) -> None:
    dataset = read_beir(_write(tmp_path / "set", qrels_name="qrels.tsv"))
    assert dataset.qrels["q1"] == {"kettle.md": 2}


def test_missing_or_malformed_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match=r"queries\.jsonl"):
        read_beir(tmp_path)
    folder = _write(tmp_path / "set")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\tkettle.md\n")
    with pytest.raises(InvalidInput, match=r"test\.tsv:2"):
        read_beir(folder)
    (folder / "queries.jsonl").write_text('{"_id": "q1"}\n')
    with pytest.raises(InvalidInput, match="_id and text"):
        read_beir(folder)
