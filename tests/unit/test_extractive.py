"""The extractive answerer: right sentence, right source number, clearly labelled."""

from __future__ import annotations

from typing import Any

from parley.domain.chat import ChatMessage
from parley.domain.retrieval import RetrievedChunk
from parley.providers.llm.base import LLM, GenerationRequest
from parley.providers.llm.extractive import LABEL, NOT_FOUND, ExtractiveLLM, split_sentences


def _chunk(text: str, n: int = 1, **meta: Any) -> RetrievedChunk:
    return RetrievedChunk(
        chunk_id=n,
        collection_id="docs",
        document_id=f"d{n}",
        document_title=f"Doc {n}",
        source=f"doc{n}.md",
        text=text,
        token_count=len(text.split()),
        position=0,
        meta=meta,
    )


def _ask(question: str, *texts: str) -> GenerationRequest:
    return GenerationRequest(
        messages=[ChatMessage(role="user", content=question)],
        question=question,
        sources=[_chunk(t, i) for i, t in enumerate(texts, start=1)],
    )


CATS = "Cats sleep for most of the day. They are famously independent animals."
PGVECTOR = (
    "Parley runs on SQLite by default. For large deployments it stores embeddings in "
    "Postgres with the pgvector extension. Backups are taken nightly."
)


async def test_picks_the_matching_sentence_and_cites_its_source() -> None:
    completion = await ExtractiveLLM().complete(
        _ask("Which extension stores embeddings in Postgres?", CATS, PGVECTOR)
    )
    assert completion.text == (
        LABEL + "For large deployments it stores embeddings in Postgres with the pgvector "
        "extension. [2]"
    )
    assert "Cats" not in completion.text and "[1]" not in completion.text


async def test_matches_word_forms_through_light_stemming() -> None:
    text = "The indexer is slow. Documents are indexed in the background by a worker."
    completion = await ExtractiveLLM().complete(
        _ask("When does indexing of documents happen?", text)
    )
    assert completion.text == LABEL + "Documents are indexed in the background by a worker. [1]"


async def test_answer_is_labelled_and_grouped_in_source_order() -> None:
    first = "Refund requests need the original receipt."
    second = "Refunds are accepted within 30 days of purchase."
    completion = await ExtractiveLLM().complete(
        # The second source matches best, but quotes follow source order.
        _ask("Are refunds accepted 30 days after purchase, and is a receipt needed?", first, second)
    )
    assert completion.text == LABEL + first + " [1] " + second + " [2]"


async def test_marginal_sentences_are_left_out() -> None:
    text = "Refund requests need the original receipt. Shipping costs are not refunded."
    completion = await ExtractiveLLM().complete(_ask("Do refund requests need a receipt?", text))
    assert completion.text == LABEL + "Refund requests need the original receipt. [1]"


async def test_no_match_or_no_sources_says_not_found_without_citations() -> None:
    llm = ExtractiveLLM()
    for request in (
        _ask("What is the capital of Mongolia?", CATS, PGVECTOR),
        _ask("Which extension stores embeddings?"),
        _ask("what is it?", PGVECTOR),  # stopwords only
    ):
        completion = await llm.complete(request)
        assert completion.text == NOT_FOUND
        assert "[" not in completion.text


async def test_near_identical_sentences_are_quoted_once_from_the_earlier_source() -> None:
    sentence = "The API rate limit is 60 requests per minute."
    completion = await ExtractiveLLM().complete(
        _ask("What is the API rate limit?", sentence, "Note: " + sentence.lower())
    )
    assert completion.text == LABEL + sentence + " [1]"


async def test_earlier_sources_win_ties_and_max_sentences_is_respected() -> None:
    texts = ["Port 8000 serves HTTP.", "Port 9000 serves HTTP.", "Port 7000 serves HTTP."]
    one = await ExtractiveLLM(max_sentences=1).complete(_ask("Which port serves HTTP?", *texts))
    assert one.text == LABEL + "Port 8000 serves HTTP. [1]"
    two = await ExtractiveLLM(max_sentences=2).complete(_ask("Which port serves HTTP?", *texts))
    assert two.text.count("[") == 2


async def test_usage_counts_words_of_question_used_sources_and_answer() -> None:
    request = _ask("Which extension stores embeddings in Postgres?", CATS, PGVECTOR)
    completion = await ExtractiveLLM().complete(request)
    assert completion.usage.input_tokens == 6 + len(PGVECTOR.split())
    assert completion.usage.output_tokens == len(completion.text.split())


async def test_stream_is_word_pieces_that_rebuild_the_answer() -> None:
    llm = ExtractiveLLM()
    request = _ask("Which extension stores embeddings in Postgres?", CATS, PGVECTOR)
    deltas = [d async for d in llm.stream(request)]
    texts = [d.text for d in deltas[:-1]]
    assert len(texts) == len((await llm.complete(request)).text.split())
    assert "".join(texts) == (await llm.complete(request)).text
    assert deltas[-1].usage == (await llm.complete(request)).usage


def test_is_a_non_generative_llm() -> None:
    llm = ExtractiveLLM()
    assert isinstance(llm, LLM)
    assert (llm.name, llm.model, llm.generative) == ("extractive", "extractive", False)


def test_sentence_splitting_handles_lists_and_abbreviations() -> None:
    text = (
        "Dr. Smith wrote it, e.g. for tests. See p. 4.\n\n"
        "Steps:\n- install the wheel\n- run parley serve\n1. open the page"
    )
    assert split_sentences(text) == [
        "Dr. Smith wrote it, e.g. for tests.",
        "See p. 4.",
        "Steps:",
        "install the wheel.",
        "run parley serve.",
        "open the page.",
    ]
