"""Token-aware chunking: pack sentences into chunks of at most ``max_tokens`` with overlap.

Chunks never cross a section boundary, so headings and page numbers stay exact. Chunk text is
a slice of the section text (original spacing and line breaks kept), and every sentence is
counted once, in batches.

It streams: sentences are found, counted and packed a batch at a time, so memory follows
the batch (``tokenize_batch_chars``) and the chunks made, never the longest line. A
"sentence" that cannot fit in one chunk (more words than ``max_tokens``, or longer than
``max_tokens * 32`` characters) is never handed to the tokenizer whole: it is split on
words straight away, and a word over ``_MAX_WORD_CHARS`` is cut into runs first. A file of
one 24 MB line without full stops used to be tokenized as a single string (62 s, 5.9 GB).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

from parley.domain.documents import ChunkDraft, ParsedDocument, Section
from parley.providers.tokenizers.base import TokenCounter
from parley.services.parsing.budget import ParseBudget

# A sentence runs to a terminal mark (plus closing quotes/brackets) that is followed by
# whitespace, or to the end of the line. "2.5 Nm" does not end a sentence.
_SENTENCE = re.compile("\\S.*?(?:[.!?\u2026]+[\"'\u201d\u2019)\\]]*(?=\\s)|$)")
_LINE = re.compile(r"[^\n]+")
_WORD = re.compile(r"\S+")
# No real token is this long; a longer "sentence" cannot fit in a chunk anyway.
_MAX_CHARS_PER_TOKEN = 32
# A longer "word" (base64, a minified line) is cut into runs of this many characters.
_MAX_WORD_CHARS = 1000
_MAX_BATCH_ITEMS = 8192


@dataclass(frozen=True, slots=True)
class _Span:
    """A unit of packing: ``text[start:end]`` of the section, with its token count."""

    start: int
    end: int
    tokens: int


class _Batched:
    """Hands texts to the counter in batches of bounded characters and items."""

    def __init__(self, counter: TokenCounter, budget: ParseBudget) -> None:
        self.batch_chars = budget.limits.tokenize_batch_chars
        self._counter = counter
        self._budget = budget

    def count_many(self, texts: Sequence[str]) -> list[int]:
        """Token counts of ``texts``, counted a bounded batch at a time."""
        counts: list[int] = []
        start = size = 0
        for index, text in enumerate(texts):
            if index > start and (
                size + len(text) > self.batch_chars or index - start >= _MAX_BATCH_ITEMS
            ):
                counts.extend(self._counter.count_many(texts[start:index]))
                self._budget.tick()
                start, size = index, 0
            size += len(text)
        if start < len(texts):
            counts.extend(self._counter.count_many(texts[start:]))
            self._budget.tick()
        return counts


def chunk_document(
    doc: ParsedDocument,
    *,
    counter: TokenCounter,
    max_tokens: int,
    overlap_tokens: int,
    budget: ParseBudget | None = None,
) -> list[ChunkDraft]:
    """Split ``doc`` into chunks of at most ``max_tokens`` tokens, in reading order.

    Consecutive chunks of a section share trailing sentences worth at most
    ``overlap_tokens``; sentences longer than ``max_tokens`` are split on words. Raises
    ``TooManyChunks`` as soon as the document goes over ``budget`` (default limits if none).
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be at least 1")
    if not 0 <= overlap_tokens < max_tokens:
        raise ValueError("overlap_tokens must be >= 0 and smaller than max_tokens")
    budget = budget or ParseBudget()
    batched = _Batched(counter, budget)
    drafts: list[ChunkDraft] = []
    for section in doc.sections:
        for text, tokens in _chunk_section(section.text, batched, max_tokens, overlap_tokens):
            budget.add_chunk()
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
    text: str, counter: _Batched, max_tokens: int, overlap_tokens: int
) -> Iterator[tuple[str, int]]:
    groups = _pack(_units(text, counter, max_tokens), max_tokens, overlap_tokens)
    for batch in _group_batches(groups, counter.batch_chars):
        texts = [text[group[0].start : group[-1].end] for group in batch]
        for group, chunk_text, tokens in zip(batch, texts, counter.count_many(texts), strict=True):
            if tokens <= max_tokens:
                yield chunk_text, tokens
            else:
                yield from _repack(text, group, counter, max_tokens, tokens)


def _group_batches(groups: Iterable[list[_Span]], batch_chars: int) -> Iterator[list[list[_Span]]]:
    batch: list[list[_Span]] = []
    size = 0
    for group in groups:
        batch.append(group)
        size += group[-1].end - group[0].start
        if size >= batch_chars or len(batch) >= _MAX_BATCH_ITEMS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _sentences(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of every sentence of every line, trailing spaces excluded."""
    for line in _LINE.finditer(text):
        for sentence in _SENTENCE.finditer(text, line.start(), line.end()):
            stripped = len(sentence.group().rstrip())
            if stripped:
                yield sentence.start(), sentence.start() + stripped


def _units(text: str, counter: _Batched, max_tokens: int) -> Iterator[_Span]:
    """Sentence spans, counted in batches; sentences that cannot fit are split on words."""
    pending: list[tuple[int, int]] = []
    size = 0
    max_chars = max_tokens * _MAX_CHARS_PER_TOKEN
    for start, end in _sentences(text):
        if end - start > max_chars or _has_more_words(text, start, end, max_tokens):
            yield from _counted_sentences(text, pending, counter, max_tokens)
            pending, size = [], 0
            yield from _split_words(text, start, end, counter, max_tokens)
            continue
        pending.append((start, end))
        size += end - start
        if size >= counter.batch_chars or len(pending) >= _MAX_BATCH_ITEMS:
            yield from _counted_sentences(text, pending, counter, max_tokens)
            pending, size = [], 0
    yield from _counted_sentences(text, pending, counter, max_tokens)


def _has_more_words(text: str, start: int, end: int, limit: int) -> bool:
    """Whether ``text[start:end]`` has more than ``limit`` words (each costs a token or more)."""
    return next(islice(_WORD.finditer(text, start, end), limit, None), None) is not None


def _counted_sentences(
    text: str, bounds: list[tuple[int, int]], counter: _Batched, max_tokens: int
) -> Iterator[_Span]:
    counts = counter.count_many([text[start:end] for start, end in bounds])
    for (start, end), tokens in zip(bounds, counts, strict=True):
        if tokens <= max_tokens:
            yield _Span(start, end, tokens)
        else:
            yield from _split_words(text, start, end, counter, max_tokens)


def _split_words(
    text: str, start: int, end: int, counter: _Batched, max_tokens: int
) -> Iterator[_Span]:
    """Word spans of an oversized sentence, a batch at a time; the packer fills chunks."""
    pending: list[tuple[int, int]] = []
    size = 0
    for word in _WORD.finditer(text, start, end):
        for a in range(word.start(), word.end(), _MAX_WORD_CHARS):
            pending.append((a, min(a + _MAX_WORD_CHARS, word.end())))
        size += word.end() - word.start()
        if size >= counter.batch_chars or len(pending) >= _MAX_BATCH_ITEMS:
            yield from _counted_words(text, pending, counter, max_tokens)
            pending, size = [], 0
    yield from _counted_words(text, pending, counter, max_tokens)


def _counted_words(
    text: str, words: list[tuple[int, int]], counter: _Batched, max_tokens: int
) -> Iterator[_Span]:
    counts = counter.count_many([text[a:b] for a, b in words])
    for (a, b), tokens in zip(words, counts, strict=True):
        if tokens <= max_tokens:
            yield _Span(a, b, tokens)
        else:
            yield from _split_chars(text, a, b, tokens, counter, max_tokens)


def _split_chars(
    text: str, start: int, end: int, tokens: int, counter: _Batched, max_tokens: int
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


def _pack(spans: Iterable[_Span], max_tokens: int, overlap_tokens: int) -> Iterator[list[_Span]]:
    """Greedy packing; each new chunk opens with the previous chunk's trailing overlap."""
    current: list[_Span] = []
    total = 0
    for span in spans:
        if current and total + span.tokens > max_tokens:
            yield current
            current = _overlap(current, overlap_tokens)
            total = sum(s.tokens for s in current)
            # The carried sentences must leave room for the new one; drop the oldest first.
            while current and total + span.tokens > max_tokens:
                total -= current.pop(0).tokens
        current.append(span)
        total += span.tokens
    if current:
        yield current


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
    text: str, group: list[_Span], counter: _Batched, max_tokens: int, tokens: int
) -> list[tuple[str, int]]:
    """Rare path for counters that are not additive over whitespace (e.g. BPE merges).

    The joined text cost more than its sentences did, so pack the group again with a
    tighter budget until every piece fits; a single span always fits on its own.
    """
    budget = max_tokens
    while True:
        budget = max(1, budget - max(1, tokens - max_tokens))
        pieces = list(_pack(group, budget, overlap_tokens=0))
        texts = [text[piece[0].start : piece[-1].end] for piece in pieces]
        counts = counter.count_many(texts)
        if max(counts) <= max_tokens or budget == 1:
            return list(zip(texts, counts, strict=True))
        tokens = max(counts)
