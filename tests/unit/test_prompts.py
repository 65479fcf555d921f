"""Prompt templates: rendering, user text with braces, per-file overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from parley.domain.chat import HistoryMessage
from parley.domain.retrieval import RetrievedChunk
from parley.errors import ConfigurationError
from parley.providers.llm.base import GenerationRequest
from parley.providers.llm.fake import FakeLLM
from parley.services.prompt_library import (
    NO_HISTORY,
    NO_SOURCES,
    TEMPLATE_NAMES,
    PromptLibrary,
    format_sources,
)


def _chunk(text: str, title: str = "Guide", **meta: Any) -> RetrievedChunk:
    return RetrievedChunk(
        chunk_id=1,
        collection_id="docs",
        document_id="d1",
        document_title=title,
        source="guide.pdf",
        text=text,
        token_count=len(text.split()),
        position=0,
        meta=meta,
    )


HISTORY = [
    HistoryMessage(role="user", content="What is Parley?", token_count=4),
    HistoryMessage(role="assistant", content="A RAG backend [1].", token_count=5),
]


@pytest.fixture(scope="module")
def library() -> PromptLibrary:
    return PromptLibrary()


def test_answer_messages_are_system_history_then_sources_and_question(
    library: PromptLibrary,
) -> None:
    messages = library.build_answer_messages(
        question="How do I install it?",
        sources=[
            _chunk("Run pip install parley.", page=3, section="Setup > Install"),
            _chunk("Docker images exist.", title="FAQ"),
        ],
        history=HISTORY,
    )
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert "[n]" in messages[0].content or "[2]" in messages[0].content
    assert "only" in messages[0].content.lower()
    assert [m.content for m in messages[1:3]] == ["What is Parley?", "A RAG backend [1]."]
    final = messages[-1].content
    assert "[1] Guide (p. 3 / Setup > Install)\nRun pip install parley." in final
    assert "[2] FAQ\nDocker images exist." in final
    assert final.index("[1] Guide") < final.index("[2] FAQ") < final.index("How do I install it?")


def test_source_headings_show_page_or_section_when_known() -> None:
    assert format_sources([_chunk("x", page=2)]) == "[1] Guide (p. 2)\nx"
    assert format_sources([_chunk("x", section="Intro")]) == "[1] Guide (Intro)\nx"
    assert format_sources([_chunk("x", title="")]) == "[1] guide.pdf\nx"
    assert format_sources([]) == NO_SOURCES


def test_braces_in_user_text_are_rendered_verbatim(library: PromptLibrary) -> None:
    tricky = "What does {sources} or {0} or {question!r} or { or }} mean?"
    source_text = 'JSON looks like {"a": {"b": 1}} and {missing}.'
    messages = library.build_answer_messages(
        question=tricky,
        sources=[_chunk(source_text)],
        history=[HistoryMessage(role="user", content="{history}", token_count=1)],
    )
    assert messages[1].content == "{history}"
    assert tricky in messages[-1].content
    assert source_text in messages[-1].content
    rewrite = library.build_rewrite_messages(question=tricky, history=HISTORY)
    assert tricky in rewrite[-1].content


def test_rewrite_messages_carry_history_and_question(library: PromptLibrary) -> None:
    messages = library.build_rewrite_messages(question="And on Windows?", history=HISTORY)
    assert [m.role for m in messages] == ["system", "user"]
    assert "standalone question" in messages[0].content.lower()
    assert "User: What is Parley?\nAssistant: A RAG backend [1]." in messages[1].content
    assert "And on Windows?" in messages[1].content
    empty = library.build_rewrite_messages(question="Hi", history=[])
    assert NO_HISTORY in empty[1].content


def test_system_messages_in_history_are_not_replayed(library: PromptLibrary) -> None:
    history = [HistoryMessage(role="system", content="old rules", token_count=2), *HISTORY]
    messages = library.build_answer_messages(question="q", sources=[], history=history)
    assert [m.role for m in messages] == ["system", "user", "assistant", "user"]
    assert all(m.content != "old rules" for m in messages)
    assert NO_SOURCES in messages[-1].content


def test_user_directory_overrides_per_file(tmp_path: Path, library: PromptLibrary) -> None:
    (tmp_path / "answer_system.txt").write_text("Custom rules. Literal {{braces}}.\n")
    (tmp_path / "answer_user.txt").write_text("Q: {question}\nS: {sources}\n{unknown}")
    custom = PromptLibrary(tmp_path)
    messages = custom.build_answer_messages(question="q?", sources=[_chunk("t")], history=[])
    assert messages[0].content == "Custom rules. Literal {braces}."
    assert messages[-1].content == "Q: q?\nS: [1] Guide\nt\n{unknown}"
    # Files not in the directory still come from the bundle.
    assert custom.render("rewrite_system") == library.render("rewrite_system")


def test_malformed_or_missing_override_fails_at_startup(tmp_path: Path) -> None:
    (tmp_path / "answer_user.txt").write_text("Question: {question\n")
    with pytest.raises(ConfigurationError, match=r"answer_user\.txt"):
        PromptLibrary(tmp_path)
    with pytest.raises(ConfigurationError, match="does not exist"):
        PromptLibrary(tmp_path / "nope")


def test_bundled_templates_all_load(library: PromptLibrary) -> None:
    for name in TEMPLATE_NAMES:
        assert library.render(name).strip()


async def test_fake_llm_recognises_the_rewrite_prompt(library: PromptLibrary) -> None:
    messages = library.build_rewrite_messages(question="and on Windows?", history=HISTORY)
    fake = FakeLLM(reply="answer")
    completion = await fake.complete(
        GenerationRequest(messages=messages, question="and on Windows?")
    )
    assert completion.text == "and on Windows?"
    fake.rewrite_reply = "How do I install Parley on Windows?"
    completion = await fake.complete(GenerationRequest(messages=messages))
    assert completion.text == "How do I install Parley on Windows?"
    assert len(fake.requests) == 2
