"""Keyword queries keep the words that carry the topic, and only those."""

from __future__ import annotations

from parley.repositories.search import fts_expression, query_terms


def test_function_words_are_left_out() -> None:
    assert query_terms("How do I sort a list of records by one of their fields?") == [
        "sort",
        "list",
        "records",
        "one",
        "fields",
    ]
    assert fts_expression("What is the walrus operator?") == '"walrus" OR "operator"'


def test_a_query_of_function_words_only_keeps_them() -> None:
    # "to be or not to be" has no other words: searching nothing would find nothing.
    assert query_terms("To be, or not to be") == ["to", "be", "or", "not"]


def test_terms_stay_distinct_and_bounded() -> None:
    many = " ".join(f"w{n}" for n in range(100))
    assert len(query_terms(many)) == 32
    assert query_terms("list LIST List lists") == ["list", "lists"]
