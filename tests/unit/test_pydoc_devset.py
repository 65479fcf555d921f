"""The committed pydoc dev set reads as a BEIR set and keeps its shape.

Checking the answer spans against the pages needs the corpus (``eval/pydoc/validate.py``);
this test guards the files themselves, so an edit that breaks them fails CI.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from parley.services.beir import FOLLOW_UP, UNANSWERABLE, read_beir

DEVSET = Path(__file__).resolve().parents[2] / "eval" / "pydoc"


def test_the_dev_set_reads_as_beir_with_every_question_type() -> None:
    devset = read_beir(DEVSET)
    ids = [q.id for q in devset.queries]
    assert len(ids) == len(set(ids)) >= 300
    groups = Counter(q.group for q in devset.queries)
    for kind in ("paraphrase", "keyword", "multi-hop", "conversation", FOLLOW_UP, UNANSWERABLE):
        assert groups[kind] >= 10, (kind, groups)
    for query in devset.queries:
        judged = devset.qrels.get(query.id, {})
        if query.unanswerable:
            assert not judged, query.id
        else:
            assert judged and all(grade in (1, 2) for grade in judged.values()), query.id
            assert query.answer_span, query.id
            assert all(doc.endswith(".html") and ".." not in doc for doc in judged), query.id
        if query.type == "multi-hop":
            assert len(judged) >= 2, query.id
    turns = Counter(q.conversation_id for q in devset.queries if q.conversation_id)
    assert turns and set(turns.values()) == {2}
