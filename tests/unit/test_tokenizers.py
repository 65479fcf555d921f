"""Token counters: the real bundled WordPiece tokenizer and the dependency-free estimate."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from parley.errors import ProviderUnavailable
from parley.providers.tokenizers.approx import ApproxTokenCounter
from parley.providers.tokenizers.base import TokenCounter
from parley.providers.tokenizers.hf import HFTokenCounter, bundled_tokenizer_path

SENTENCE = "The Lumen Aero 500 battery should be stored between 10 and 25 °C."
# the lu ##men aero 500 battery should be stored between 10 and 25 °c .
SENTENCE_TOKENS = 15


@pytest.fixture(scope="module")
def counter() -> Iterator[HFTokenCounter]:
    yield HFTokenCounter()


def test_bundled_path_points_at_the_tokenizer_json() -> None:
    # Where the file lives, its checksum and its licence: tests/unit/test_tokenizer_data.py.
    path = bundled_tokenizer_path()
    assert path.name == "tokenizer.json"
    assert path.is_file()
    assert path.parent.name == "all-MiniLM-L6-v2"


def test_bad_path_fails_on_first_use_not_construction(tmp_path: Path) -> None:
    counter = HFTokenCounter(tmp_path / "missing.json")
    with pytest.raises(ProviderUnavailable):
        counter.count("hello")


def test_satisfies_the_port(counter: HFTokenCounter) -> None:
    assert isinstance(counter, TokenCounter)
    assert counter.name == "minilm-wordpiece"
    assert isinstance(ApproxTokenCounter(), TokenCounter)


def test_known_sentence_has_known_count(counter: HFTokenCounter) -> None:
    assert counter.count(SENTENCE) == SENTENCE_TOKENS


def test_no_special_tokens_and_empty_text(counter: HFTokenCounter) -> None:
    assert counter.count("hello") == 1
    assert counter.count("") == 0
    assert counter.count_many([]) == []


def test_no_truncation_or_padding(counter: HFTokenCounter) -> None:
    # The shipped config truncates and pads to 128; counting must do neither.
    assert counter.count("bike " * 300) == 300
    assert counter.count_many(["bike", "bike " * 200]) == [1, 200]


def test_count_many_matches_count(counter: HFTokenCounter) -> None:
    texts = [SENTENCE, "", "Torque the stem faceplate bolts to 5 Nm.", "E07 " * 50]
    assert counter.count_many(texts) == [counter.count(text) for text in texts]


def test_concurrent_first_use_loads_once_and_agrees() -> None:
    counter = HFTokenCounter(bundled_tokenizer_path())
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(counter.count(SENTENCE))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [SENTENCE_TOKENS] * 8


def test_approx_counts_words_and_punctuation() -> None:
    counter = ApproxTokenCounter()
    assert counter.name == "approx"
    assert counter.count("Hello, world!") == 4
    assert counter.count("") == 0
    assert counter.count_many(["a b", "2.5 Nm"]) == [2, 4]
