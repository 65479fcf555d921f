"""Token-aware chunking: pack sentences into chunks of at most ``max_tokens`` with overlap.

Chunks never cross a section boundary, so headings and page numbers stay exact. Chunk text is
a slice of the section text (original spacing and line breaks kept), and every sentence is
counted once, in one batch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from parley.domain.documents import ChunkDraft, ParsedDocument, Section
from parley.providers.tokenizers.base import TokenCounter

# A sentence runs to a terminal mark (plus closing quotes/brackets) that is followed by
# whitespace, or to the end of the line. "2.5 Nm" does not end a sentence.
_SENTENCE = re.compile("\\S.*?(?:[.!?\u2026]+[\"'\u201d\u2019)\\]]*(?=\\s)|$)")
_LINE = re.compile(r"[^\n]+")
_WORD = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class _Span:
    """A unit of packing: ``text[start:end]`` of the section, with its token count."""

    start: int
    end: int
    tokens: int


def chunk_document(
    doc: ParsedDocument, *, counter: TokenCounter, max_tokens: int, overlap_tokens: int
) -> list[ChunkDraft]:
    """Split ``doc`` into chunks of at most ``max_tokens`` tokens, in reading order.

    Consecutive chunks of a section share trailing sentences worth at most
    ``overlap_tokens``; sentences longer than ``max_tokens`` are split on words.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError("overlap_tokens must be >= 0 and smaller than max_tokens")
    drafts: list[ChunkDraft] = []
    for section in doc.sections:
        for text, tokens in _chunk_section(section.text, counter, max_tokens, overlap_tokens):
            drafts.append(_draft(len(drafts), text, tokens, section))
    return drafts


def _draft(position: int, text: str, tokens: int, section: Section) -> ChunkDraft:
    return ChunkDraft(
        position=position,
        text=text,
        token_count=tokens,
        heading=section.heading,
        page=section.page,
    )


def _chunk_section(
    text: str, counter: TokenCounter, max_tokens: int, overlap_tokens: int
) -> list[tuple[str, int]]:
    spans = _units(text, counter, max_tokens)
    if not spans:
        return []
    groups = _pack(spans, max_tokens, overlap_tokens)
    texts = [text[group[0].start : group[-1].end] for group in groups]
    out: list[tuple[str, int]] = []
    for group, chunk_text, tokens in zip(groups, texts, counter.count_many(texts), strict=True):
        if tokens <= max_tokens:
            out.append((chunk_text, tokens))
        else:
            out.extend(_repack(text, group, counter, max_tokens, tokens))
    return out


def _units(text: str, counter: TokenCounter, max_tokens: int) -> list[_Span]:
    """Sentence spans of every line, counted in one batch; oversized ones split on words."""
    bounds = [
        (line.start() + sentence.start(), line.start() + sentence.start() + len(stripped))
        for line in _LINE.finditer(text)
        for sentence in _SENTENCE.finditer(line.group())
        if (stripped := sentence.group().rstrip())
    ]
    counts = counter.count_many([text[start:end] for start, end in bounds])
    spans: list[_Span] = []
    for (start, end), tokens in zip(bounds, counts, strict=True):
        if tokens <= max_tokens:
            spans.append(_Span(start, end, tokens))
        else:
            spans.extend(_split_words(text, start, end, counter, max_tokens))
    return spans


def _split_words(
    text: str, start: int, end: int, counter: TokenCounter, max_tokens: int
) -> list[_Span]:
    """Word spans of an oversized sentence; the packer then fills chunks with them."""
    words = [(start + m.start(), start + m.end()) for m in _WORD.finditer(text[start:end])]
    counts = counter.count_many([text[a:b] for a, b in words])
    spans: list[_Span] = []
    for (a, b), tokens in zip(words, counts, strict=True):
        if tokens <= max_tokens:
            spans.append(_Span(a, b, tokens))
        else:
            spans.extend(_split_chars(text, a, b, tokens, counter, max_tokens))
    return spans


def _split_chars(
    text: str, start: int, end: int, tokens: int, counter: TokenCounter, max_tokens: int
) -> list[_Span]:
    """Cut a single huge "word" (a URL, base64) into character runs that fit."""
    width = max(1, (end - start) * max_tokens // tokens)
    while True:
        cuts = list(range(start, end, width))
        bounds = [(a, min(a + width, end)) for a in cuts]
        counts = counter.count_many([text[a:b] for a, b in bounds])
        if width == 1 or max(counts) <= max_tokens:
            return [_Span(a, b, n) for (a, b), n in zip(bounds, counts, strict=True)]
        width = max(1, width // 2)


def _pack(spans: list[_Span], max_tokens: int, overlap_tokens: int) -> list[list[_Span]]:
    """Greedy packing; each new chunk opens with the previous chunk's trailing overlap."""
    groups: list[list[_Span]] = []
    current: list[_Span] = []
    total = 0
    for span in spans:
        if current and total + span.tokens > max_tokens:
            groups.append(current)
            current = _overlap(current, overlap_tokens)
            total = sum(s.tokens for s in current)
            # The carried sentences must leave room for the new one; drop the oldest first.
            while current and total + span.tokens > max_tokens:
                total -= current.pop(0).tokens
        current.append(span)
        total += span.tokens
    if current:
        groups.append(current)
    return groups


def _overlap(group: list[_Span], overlap_tokens: int) -> list[_Span]:
    carried: list[_Span] = []
    total = 0
    for span in reversed(group):
        if total + span.tokens > overlap_tokens:
            break
        carried.insert(0, span)
        total += span.tokens
    return carried


def _repack(
    text: str, group: list[_Span], counter: TokenCounter, max_tokens: int, tokens: int
) -> list[tuple[str, int]]:
    """Rare path for counters that are not additive over whitespace (e.g. BPE merges).

    The joined text cost more than its sentences did, so pack the group again with a
    tighter budget until every piece fits; a single span always fits on its own.
    """
    budget = max_tokens
    while True:
        budget = max(1, budget - max(1, tokens - max_tokens))
        pieces = _pack(group, budget, overlap_tokens=0)
        texts = [text[piece[0].start : piece[-1].end] for piece in pieces]
        counts = counter.count_many(texts)
        if max(counts) <= max_tokens or budget == 1:
            return list(zip(texts, counts, strict=True))
        tokens = max(counts)
