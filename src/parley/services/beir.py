"""Reading a BEIR-format evaluation set: ``queries.jsonl``, qrels and optionally a corpus.

A folder holds ``queries.jsonl`` (one ``{"_id", "text", "metadata"?}`` per line) and
``qrels/test.tsv`` or ``qrels.tsv`` (``query-id<TAB>corpus-id<TAB>score`` after a header,
graded relevance ≥ 0). A ``corpus-id`` is a document's source as Parley stores it: its path
relative to the ingested folder (``library/os.html``), or the ``_id`` of a ``corpus.jsonl``
entry when that corpus was ingested by ``parley eval --ingest``.

Parley reads a few optional query fields, at top level or inside ``metadata``:
``answer_span`` (text the answering passage contains), ``conversation_id`` and ``turn``
(multi-turn sets), ``unanswerable`` (bool) and ``type`` (a label such as ``keyword``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from parley.errors import InvalidInput

FOLLOW_UP = "follow-up"
UNANSWERABLE = "unanswerable"
UNTYPED = "untyped"


@dataclass(slots=True, frozen=True)
class BeirQuery:
    """One query of a BEIR set with Parley's optional labels."""

    id: str
    text: str
    type: str | None = None
    answer_span: str | None = None
    conversation_id: str | None = None
    turn: int | None = None
    unanswerable: bool = False

    @property
    def group(self) -> str:
        """The report row: ``unanswerable``, ``follow-up`` (turn > 1), else its type."""
        if self.unanswerable:
            return UNANSWERABLE
        if self.turn is not None and self.turn > 1:
            return FOLLOW_UP
        return self.type or UNTYPED

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BeirQuery:
        """Read one ``queries.jsonl`` object; labels may sit at top level or in metadata."""
        meta = raw.get("metadata") or {}
        if not isinstance(meta, dict):
            meta = {}

        def pick(name: str) -> Any:
            return raw[name] if raw.get(name) is not None else meta.get(name)

        turn = pick("turn")
        conversation = pick("conversation_id")
        return cls(
            id=str(raw["_id"]),
            text=str(raw["text"]),
            type=str(pick("type")) if pick("type") is not None else None,
            answer_span=str(pick("answer_span")) if pick("answer_span") else None,
            conversation_id=str(conversation) if conversation is not None else None,
            turn=int(turn) if turn is not None else None,
            unanswerable=bool(pick("unanswerable")),
        )


@dataclass(slots=True, frozen=True)
class CorpusDoc:
    """One ``corpus.jsonl`` entry."""

    id: str
    title: str
    text: str


@dataclass(slots=True)
class BeirSet:
    """The queries in file order and their judgments: query id → {corpus id → grade}."""

    queries: list[BeirQuery]
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    corpus_path: Path | None = None


def _jsonl(path: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise InvalidInput(f"{path}:{number}: expected a JSON object")
        rows.append(row)
    return rows


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """``query-id<TAB>corpus-id<TAB>score`` lines; a header line (non-numeric score) is skipped."""
    qrels: dict[str, dict[str, int]] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 3:
            raise InvalidInput(f"{path}:{number}: expected query-id, corpus-id and score")
        query_id, corpus_id, score = parts[0].strip(), parts[1].strip(), parts[2].strip()
        try:
            grade = int(float(score))
        except ValueError:
            if number == 1:
                continue  # the header
            raise InvalidInput(f"{path}:{number}: score {score!r} is not a number") from None
        if grade < 0:
            raise InvalidInput(f"{path}:{number}: score must be ≥ 0")
        qrels.setdefault(query_id, {})[corpus_id] = grade
    return qrels


def read_beir(folder: Path) -> BeirSet:
    """The evaluation set in ``folder``; ``InvalidInput`` names what is missing or malformed."""
    queries_path = folder / "queries.jsonl"
    if not queries_path.is_file():
        raise InvalidInput(f"{queries_path} not found (a BEIR folder holds queries.jsonl)")
    qrels_path = next(
        (p for p in (folder / "qrels" / "test.tsv", folder / "qrels.tsv") if p.is_file()), None
    )
    if qrels_path is None:
        raise InvalidInput(f"no qrels/test.tsv or qrels.tsv in {folder}")
    try:
        queries = [BeirQuery.from_dict(row) for row in _jsonl(queries_path)]
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"{queries_path}: every query needs _id and text ({exc})") from None
    corpus = folder / "corpus.jsonl"
    return BeirSet(
        queries=queries,
        qrels=read_qrels(qrels_path),
        corpus_path=corpus if corpus.is_file() else None,
    )


def read_corpus(path: Path) -> list[CorpusDoc]:
    """The documents of a ``corpus.jsonl`` (``{"_id", "title"?, "text"}`` per line)."""
    try:
        return [
            CorpusDoc(str(row["_id"]), str(row.get("title") or ""), str(row["text"]))
            for row in _jsonl(path)
        ]
    except KeyError as exc:
        raise InvalidInput(f"{path}: every document needs _id and text ({exc})") from None


def corpus_upload_text(doc: CorpusDoc) -> str:
    """What is ingested for a corpus document: its title as a first line, then its text."""
    return f"{doc.title}\n\n{doc.text}" if doc.title else doc.text
