"""Prompt templates as data: bundled ``prompts/*.txt``, overridable per file by a directory.

Templates use ``str.format`` placeholders (``{question}``, ``{sources}``, ``{history}``).
User text is only ever substituted as a value, never parsed as a template, so braces in a
question or a document cannot break rendering; unknown placeholders are left as written.
A template that needs a literal brace writes ``{{`` or ``}}``.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from parley.domain.chat import ChatMessage, HistoryMessage
from parley.domain.retrieval import RetrievedChunk
from parley.errors import ConfigurationError

TEMPLATE_NAMES = ("answer_system", "answer_user", "rewrite_system", "rewrite_user")
NO_SOURCES = "(no sources were found)"
NO_HISTORY = "(no earlier messages)"
_SPEAKERS = {"user": "User", "assistant": "Assistant"}


class _KeepMissing(dict[str, str]):
    """Leaves ``{unknown}`` placeholders as they are instead of raising ``KeyError``."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class PromptLibrary:
    """Loads the prompt templates once and renders chat messages from them."""

    def __init__(self, directory: Path | None = None) -> None:
        """Read the bundled templates; files in ``directory`` replace those of the same name."""
        if directory is not None and not directory.is_dir():
            raise ConfigurationError(f"Prompt directory {directory} does not exist")
        self._templates = {name: _load(name, directory) for name in TEMPLATE_NAMES}

    def render(self, name: str, **values: str) -> str:
        """Fill template ``name`` with ``values``."""
        return self._templates[name].format_map(_KeepMissing(values)).strip()

    def build_answer_messages(
        self,
        *,
        question: str,
        sources: Sequence[RetrievedChunk],
        history: Sequence[HistoryMessage],
    ) -> list[ChatMessage]:
        """System rules, then prior turns in order, then the numbered sources and question."""
        return [
            ChatMessage(role="system", content=self.render("answer_system")),
            *(ChatMessage(role=m.role, content=m.content) for m in history if m.role in _SPEAKERS),
            ChatMessage(
                role="user",
                content=self.render(
                    "answer_user", sources=format_sources(sources), question=question
                ),
            ),
        ]

    def build_rewrite_messages(
        self, *, question: str, history: Sequence[HistoryMessage]
    ) -> list[ChatMessage]:
        """Ask the model to turn a follow-up into a standalone search question."""
        return [
            ChatMessage(role="system", content=self.render("rewrite_system")),
            ChatMessage(
                role="user",
                content=self.render(
                    "rewrite_user", history=format_history(history), question=question
                ),
            ),
        ]


def format_sources(sources: Sequence[RetrievedChunk]) -> str:
    """``[n] Title (p. X / Section)`` then the text, per source, numbered from 1."""
    if not sources:
        return NO_SOURCES
    blocks = []
    for number, chunk in enumerate(sources, start=1):
        where = " / ".join(
            part
            for part in (
                f"p. {chunk.page}" if chunk.page is not None else "",
                chunk.section or "",
            )
            if part
        )
        title = chunk.document_title or chunk.source
        heading = f"[{number}] {title}" + (f" ({where})" if where else "")
        blocks.append(f"{heading}\n{chunk.text.strip()}")
    return "\n\n".join(blocks)


def format_history(history: Sequence[HistoryMessage]) -> str:
    """Prior turns as ``User: …`` / ``Assistant: …`` lines, oldest first."""
    lines = [f"{_SPEAKERS[m.role]}: {m.content.strip()}" for m in history if m.role in _SPEAKERS]
    return "\n".join(lines) or NO_HISTORY


def _load(name: str, directory: Path | None) -> str:
    filename = f"{name}.txt"
    override = directory / filename if directory is not None else None
    if override is not None and override.is_file():
        text, origin = override.read_text(encoding="utf-8"), str(override)
    else:
        bundled = resources.files("parley.services") / "prompts" / filename
        text, origin = bundled.read_text(encoding="utf-8"), f"bundled {filename}"
    _check(text, origin)
    return text


def _check(template: str, origin: str) -> None:
    """Fail at startup, not mid-request, on a template ``str.format`` cannot parse."""
    try:
        fields = [field for _, field, _, _ in string.Formatter().parse(template) if field]
        template.format_map(_KeepMissing(dict.fromkeys(fields, "")))
    except (ValueError, IndexError, AttributeError) as exc:
        raise ConfigurationError(f"Prompt template {origin} is malformed: {exc}") from exc
