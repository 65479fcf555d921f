"""Check the pydoc dev set against the corpus it labels.

    python eval/pydoc/validate.py CORPUS_DIR

``CORPUS_DIR`` is what ``build_corpus.py`` wrote. Checks that every qrels page exists, every
answerable query has a relevant page and every ``answer_span`` is literally in the visible
text of one of its pages (whitespace-normalised), unanswerable queries have no qrels, ids and
texts are unique, and each conversation has its two turns. Prints the counts per type; exits
1 listing the problems if any.
"""

from __future__ import annotations

import collections
import html.parser
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


class _VisibleText(html.parser.HTMLParser):
    """The text a reader sees: everything but ``<script>`` and ``<style>`` content."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._hidden += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self._hidden -= tag in ("script", "style")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def _normalise(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def visible_text(page: Path) -> str:
    """A page's visible text, whitespace-normalised and lower-cased."""
    parser = _VisibleText()
    parser.feed(page.read_text(encoding="utf-8"))
    return _normalise("".join(parser.parts))


def problems(corpus: Path) -> tuple[list[str], collections.Counter[str]]:
    """Every problem found, and the number of queries per type."""
    queries = [json.loads(line) for line in (HERE / "queries.jsonl").read_text().splitlines()]
    qrels: dict[str, list[str]] = collections.defaultdict(list)
    for line in (HERE / "qrels.tsv").read_text().splitlines()[1:]:
        query_id, corpus_id, _score = line.split("\t")
        qrels[query_id].append(corpus_id)
    found: list[str] = []
    ids = [q["_id"] for q in queries]
    texts = [_normalise(q["text"]) for q in queries]
    if len(set(ids)) != len(ids) or len(set(texts)) != len(texts):
        found.append("duplicate ids or texts")
    found += [f"qrels for unknown query {q}" for q in qrels if q not in set(ids)]
    pages: dict[str, str] = {}
    turns: dict[str, set[int]] = collections.defaultdict(set)
    types: collections.Counter[str] = collections.Counter()
    for query in queries:
        meta = query.get("metadata", {})
        types[meta.get("type", "?")] += 1
        if "conversation_id" in meta:
            turns[meta["conversation_id"]].add(int(meta["turn"]))
        relevant = qrels.get(query["_id"], [])
        if meta.get("unanswerable"):
            if relevant:
                found.append(f"{query['_id']}: unanswerable but has qrels")
            continue
        if not relevant:
            found.append(f"{query['_id']}: no relevant page")
        for corpus_id in relevant:
            if corpus_id not in pages:
                path = corpus / corpus_id
                pages[corpus_id] = visible_text(path) if path.is_file() else ""
                if not path.is_file():
                    found.append(f"{query['_id']}: {corpus_id} is not in the corpus")
        span = _normalise(meta.get("answer_span", ""))
        if not span or not any(span in pages[c] for c in relevant):
            found.append(f"{query['_id']}: answer_span not found in its pages")
    found += [f"conversation {c}: turns {sorted(t)}" for c, t in turns.items() if t != {1, 2}]
    return found, types


def main() -> None:
    """Validate against the corpus folder given on the command line."""
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    found, types = problems(Path(sys.argv[1]))
    print(", ".join(f"{kind}: {n}" for kind, n in sorted(types.items())))
    for problem in found:
        print(problem)
    if found:
        sys.exit(1)
    print(f"{sum(types.values())} queries valid")


if __name__ == "__main__":
    main()
