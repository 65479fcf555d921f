"""Chunking: token limits, overlap, section boundaries, positions and determinism."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from parley.domain.documents import ParsedDocument, Section
from parley.providers.tokenizers.approx import ApproxTokenCounter
from parley.providers.tokenizers.hf import HFTokenCounter
from parley.services.chunking import chunk_document
from parley.services.parsing import parse_document

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DOCS = EXAMPLES / "docs"
COUNTER = ApproxTokenCounter()


def sentences(n: int, prefix: str = "Sentence") -> str:
    # Each sentence is 6 approx tokens: word, word, number, word, word, period.
    return " ".join(f"{prefix} number {i} is here." for i in range(n))


def doc(*sections: Section) -> ParsedDocument:
    return ParsedDocument(title="t", sections=list(sections))


class SpyCounter:
    """Approximate counter that records how it is called."""

    name = "spy"

    def __init__(self) -> None:
        self.single_calls = 0
        self.batch_sizes: list[int] = []

    def count(self, text: str) -> int:
        self.single_calls += 1
        tokens: int = COUNTER.count(text)
        return tokens

    def count_many(self, texts: Sequence[str]) -> list[int]:
        self.batch_sizes.append(len(texts))
        counts: list[int] = COUNTER.count_many(texts)
        return counts


class CharCounter:
    """Not additive over whitespace: joined text costs more than its parts, like some BPEs."""

    name = "chars"

    def count(self, text: str) -> int:
        return len(text)

    def count_many(self, texts: Sequence[str]) -> list[int]:
        return [len(text) for text in texts]


def test_chunks_respect_max_tokens_and_report_their_count() -> None:
    chunks = chunk_document(
        doc(Section(sentences(50))), counter=COUNTER, max_tokens=40, overlap_tokens=12
    )
    assert len(chunks) > 5
    for chunk in chunks:
        assert chunk.token_count <= 40
        assert chunk.token_count == COUNTER.count(chunk.text)


def test_consecutive_chunks_overlap_by_trailing_sentences() -> None:
    chunks = chunk_document(
        doc(Section(sentences(50))), counter=COUNTER, max_tokens=40, overlap_tokens=12
    )
    for previous, current in itertools.pairwise(chunks):
        # Two 6-token sentences fit in a 12-token overlap.
        carried = ". ".join(previous.text.split(". ")[-2:])
        assert current.text.startswith(carried)
        assert COUNTER.count(carried) <= 12
    # Overlap never stalls: every sentence appears, in order.
    last_numbers = [int(chunk.text.split()[-3]) for chunk in chunks]
    assert last_numbers == sorted(set(last_numbers))
    assert last_numbers[-1] == 49


def test_zero_overlap_partitions_the_text() -> None:
    text = sentences(30)
    chunks = chunk_document(doc(Section(text)), counter=COUNTER, max_tokens=25, overlap_tokens=0)
    assert " ".join(chunk.text for chunk in chunks) == text


def test_positions_are_contiguous_across_sections_and_sections_never_merge() -> None:
    parsed = doc(
        Section(sentences(20, "Alpha"), heading="Guide > Install"),
        Section("Tiny.", heading="Guide > Tiny"),
        Section(sentences(20, "Gamma"), page=3),
    )
    chunks = chunk_document(parsed, counter=COUNTER, max_tokens=30, overlap_tokens=6)
    assert [chunk.position for chunk in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        words = {"Alpha", "Tiny", "Gamma"} & set(chunk.text.replace(".", " ").split())
        assert len(words) == 1, chunk.text
    tiny = [chunk for chunk in chunks if chunk.heading == "Guide > Tiny"]
    assert [chunk.text for chunk in tiny] == ["Tiny."]
    assert all(chunk.page == 3 for chunk in chunks if "Gamma" in chunk.text)
    assert all("Guide" not in chunk.text for chunk in chunks)  # heading kept out of text
    assert chunks[0].meta() == {"section": "Guide > Install"}


def test_long_sentence_is_split_on_words() -> None:
    run_on = " ".join(f"word{i}" for i in range(95)) + "."
    chunks = chunk_document(doc(Section(run_on)), counter=COUNTER, max_tokens=20, overlap_tokens=5)
    assert all(chunk.token_count <= 20 for chunk in chunks)
    assert chunks[0].text.startswith("word0 word1")
    assert chunks[-1].text.endswith("word94.")
    words = [word for chunk in chunks for word in chunk.text.rstrip(".").split()]
    assert set(words) == {f"word{i}" for i in range(95)}


def test_one_enormous_word_is_split_on_characters() -> None:
    blob = "x" * 500
    counter = CharCounter()
    chunks = chunk_document(doc(Section(blob)), counter=counter, max_tokens=64, overlap_tokens=0)
    assert all(chunk.token_count <= 64 for chunk in chunks)
    assert "".join(chunk.text for chunk in chunks) == blob


def test_non_additive_counter_still_respects_max_tokens() -> None:
    text = " ".join(["abcd"] * 40)
    chunks = chunk_document(
        doc(Section(text)), counter=CharCounter(), max_tokens=20, overlap_tokens=5
    )
    assert chunks
    assert all(len(chunk.text) <= 20 for chunk in chunks)
    assert all(chunk.token_count == len(chunk.text) for chunk in chunks)


def test_paragraphs_and_lines_are_boundaries() -> None:
    text = "Heading line without period\nSecond line\n\nNew paragraph here."
    chunks = chunk_document(doc(Section(text)), counter=COUNTER, max_tokens=5, overlap_tokens=0)
    assert [chunk.text for chunk in chunks] == [
        "Heading line without period",
        "Second line",
        "New paragraph here.",
    ]


def test_each_sentence_is_counted_once_in_a_batch() -> None:
    spy = SpyCounter()
    chunks = chunk_document(
        doc(Section(sentences(200)), Section(sentences(100))),
        counter=spy,
        max_tokens=60,
        overlap_tokens=12,
    )
    assert spy.single_calls == 0
    # One batch of sentences and one batch of final chunk texts per section.
    assert len(spy.batch_sizes) == 4
    assert sum(spy.batch_sizes) == 300 + len(chunks)


def test_deterministic() -> None:
    parsed = parse_document((DOCS / "warranty.md").read_bytes(), filename="warranty.md")
    first = chunk_document(parsed, counter=COUNTER, max_tokens=50, overlap_tokens=10)
    second = chunk_document(parsed, counter=COUNTER, max_tokens=50, overlap_tokens=10)
    assert first == second


def test_empty_document_and_bad_arguments() -> None:
    assert chunk_document(doc(), counter=COUNTER, max_tokens=10, overlap_tokens=0) == []
    with pytest.raises(ValueError):
        chunk_document(doc(), counter=COUNTER, max_tokens=0, overlap_tokens=0)
    with pytest.raises(ValueError):
        chunk_document(doc(), counter=COUNTER, max_tokens=10, overlap_tokens=10)


def test_examples_chunk_with_the_real_tokenizer_and_keep_answers_intact() -> None:
    counter = HFTokenCounter()
    questions = json.loads((EXAMPLES / "questions.json").read_text())
    by_file: dict[str, list[str]] = {}
    for path in sorted(DOCS.iterdir()):
        if path.suffix == ".py":
            continue
        parsed = parse_document(path.read_bytes(), filename=path.name)
        chunks = chunk_document(parsed, counter=counter, max_tokens=96, overlap_tokens=16)
        assert chunks, path.name
        assert all(0 < chunk.token_count <= 96 for chunk in chunks)
        by_file[path.name] = [" ".join(chunk.text.split()) for chunk in chunks]
    for item in questions:
        phrase = item["expected_phrase"]
        assert any(phrase in text for text in by_file[item["expected_file"]]), item
