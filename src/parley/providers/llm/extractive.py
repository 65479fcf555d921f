"""The default answerer when no model is configured: quote the best-matching sentences.

It reads ``request.question`` and ``request.sources`` (numbered from 1), never the prompt, so it
needs no model, no network and no GPU; scoring a few thousand sentences takes about a
millisecond, so it runs on the event loop.
"""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from parley.domain.chat import Completion, StreamDelta, Usage
from parley.domain.retrieval import RetrievedChunk
from parley.providers.llm.base import GenerationRequest

LABEL = "Extractive answer (no language model configured): "
NOT_FOUND = "I could not find this in the documents."

_STOPWORD_LIST = """
    a about above after again all also am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for
    from further had has have having he her here hers him his how i if in into is it its
    itself just me more most my no nor not now of off on once only or other our out over
    own same she should so some such than that the their them then there these they this
    those through to too under until up very was we were what when where which while who
    whom why will with would you your yours please tell explain describe"""
_STOPWORDS = frozenset(_STOPWORD_LIST.split())
_APOSTROPHE = "\u2019"  # typographic apostrophe, folded to "'"
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")
# A sentence ends at . ! ? (maybe followed by a closing quote or bracket), then whitespace,
# then anything but a lower-case letter (so "e.g. foo" and "approx. five" stay whole).
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+(?=[^a-z\s])")
# Earlier sources are slightly preferred: source n is weighted 1 / (1 + _RANK_DECAY * (n - 1)).
_RANK_DECAY = 0.1
# Sentences scoring below this share of the best one are left out as marginal.
_MIN_RELATIVE_SCORE = 0.4
_DUPLICATE_JACCARD = 0.8
_MAX_SENTENCE_CHARS = 600
# Words before a period that do not end a sentence ("Dr. Smith", "see p. 4", "Fig. 2").
_ABBREVIATION_LIST = "dr mr mrs ms prof st vs cf fig figs no nr p pp ch sec vol approx e.g i.e jr"
_ABBREVIATIONS = frozenset(_ABBREVIATION_LIST.split())
_LIST_MARKER = re.compile(r"^(?:[-*•]|\d+[.)])\s+")


@dataclass(slots=True, frozen=True)
class _Sentence:
    source: int  # 1-based number of the source, as cited
    position: int  # order within the source
    text: str
    keys: frozenset[str]  # match keys of its content words


class ExtractiveLLM:
    """Answers by citing the source sentences that best overlap the question's words."""

    name = "extractive"
    model = "extractive"
    generative = False

    def __init__(self, *, max_sentences: int = 4) -> None:
        """Quote at most ``max_sentences`` sentences per answer."""
        self._max_sentences = max(1, max_sentences)

    async def complete(self, request: GenerationRequest) -> Completion:
        """Build the answer from the sources."""
        text, usage = self._answer(request)
        return Completion(text=text, usage=usage, model=self.model)

    async def stream(self, request: GenerationRequest) -> AsyncIterator[StreamDelta]:
        """Yield the answer word by word, then one usage delta."""
        text, usage = self._answer(request)
        for piece in re.findall(r"\s*\S+\s*", text):
            yield StreamDelta(text=piece)
        yield StreamDelta(usage=usage, finish_reason="stop")

    async def aclose(self) -> None:
        """Nothing to release."""

    def _answer(self, request: GenerationRequest) -> tuple[str, Usage]:
        chosen = self._select(request.question, request.sources)
        if not chosen:
            text = NOT_FOUND
            used_words = 0
        else:
            chosen.sort(key=lambda s: (s.source, s.position))
            text = LABEL + " ".join(f"{s.text} [{s.source}]" for s in chosen)
            used = {s.source for s in chosen}
            used_words = sum(
                _word_count(chunk.text)
                for number, chunk in enumerate(request.sources, start=1)
                if number in used
            )
        usage = Usage(
            input_tokens=_word_count(request.question) + used_words,
            output_tokens=_word_count(text),
        )
        return text, usage

    def _select(self, question: str, sources: Sequence[RetrievedChunk]) -> list[_Sentence]:
        # One entry per distinct question word; each matches through any of its keys.
        wanted = list({_light(w): _keys(w) for w in content_words(question)}.values())
        if not wanted:
            return []
        sentences = [
            _Sentence(source=number, position=position, text=text, keys=_text_keys(text))
            for number, chunk in enumerate(sources, start=1)
            for position, text in enumerate(split_sentences(chunk.text))
        ]
        hits = [[not keys.isdisjoint(s.keys) for keys in wanted] for s in sentences]
        idf = _idf(hits, len(wanted))
        scored: list[tuple[float, _Sentence]] = []
        for sentence, row in zip(sentences, hits, strict=True):
            overlap = sum(weight for weight, hit in zip(idf, row, strict=True) if hit)
            if overlap > 0:
                rank_weight = 1.0 / (1.0 + _RANK_DECAY * (sentence.source - 1))
                scored.append((overlap * rank_weight, sentence))
        if not scored:
            return []
        # Stable sort: ties keep source order, then sentence order.
        scored.sort(key=lambda item: item[0], reverse=True)
        floor = scored[0][0] * _MIN_RELATIVE_SCORE
        chosen: list[_Sentence] = []
        for score, sentence in scored:
            if score < floor or len(chosen) == self._max_sentences:
                break
            if not any(_near_duplicate(sentence, other) for other in chosen):
                chosen.append(sentence)
        return chosen


def split_sentences(text: str) -> list[str]:
    """Sentences and list items of ``text``, whitespace collapsed, ending in punctuation."""
    sentences: list[str] = []
    for block in re.split(r"\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)", text):
        for raw in _split_block(" ".join(block.split())):
            sentence = _LIST_MARKER.sub("", raw.strip())
            if not _WORD.search(sentence):
                continue
            if len(sentence) > _MAX_SENTENCE_CHARS:
                sentence = sentence[:_MAX_SENTENCE_CHARS].rsplit(" ", 1)[0] + " …"
            elif sentence[-1].isalnum():
                sentence += "."
            sentences.append(sentence)
    return sentences


def _split_block(block: str) -> list[str]:
    parts: list[str] = []
    start = 0
    for boundary in _SENTENCE_END.finditer(block):
        before = block[start : boundary.start()].rsplit(" ", 1)[-1]
        word = before.rstrip("\"')]").rstrip(".").lower()
        if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
            continue  # "Dr. Smith", initials like "J. Smith"
        parts.append(block[start : boundary.start()])
        start = boundary.end()
    parts.append(block[start:])
    return parts


def content_words(text: str) -> list[str]:
    """Lower-cased words of ``text`` without stopwords."""
    words = _WORD.findall(text.lower().replace(_APOSTROPHE, "'"))
    return [w for w in words if w not in _STOPWORDS]


def _text_keys(text: str) -> frozenset[str]:
    return frozenset(key for word in content_words(text) for key in _keys(word))


def _keys(word: str) -> frozenset[str]:
    """Match keys of a word: its plural-free form and a form without -ed/-ing as well.

    Two keys instead of one aggressive stem keep "embed" and "embedded" together (via
    "embed") as well as "use", "used" and "using" (via "us").
    """
    return frozenset((_light(word), _heavy(word)))


def _light(word: str) -> str:
    """Drop a plural ending and a final "e": "indexes" → "index", "uses" → "us"."""
    if not word.isalpha():
        return word
    if len(word) > 4 and word.endswith("ies"):
        word = word[:-3] + "y"
    elif len(word) > 4 and word.endswith(("sses", "xes", "zes", "ches", "shes")):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    return word[:-1] if len(word) > 2 and word.endswith("e") else word


def _heavy(word: str) -> str:
    """``_light`` and then drop -ing/-ed: "indexing" → "index", "running" → "run"."""
    word = _light(word)
    if not word.isalpha():
        return word
    if len(word) > 4 and word.endswith("ing") and _has_vowel(word[:-3]):
        word = word[:-3]
    elif len(word) > 3 and word.endswith("ed") and not word.endswith("eed"):
        word = word[:-2] if _has_vowel(word[:-2]) else word
    else:
        return word
    if len(word) > 2 and word.endswith("e"):
        word = word[:-1]
    if len(word) > 2 and word[-1] == word[-2] and word[-1] not in "lsz":
        word = word[:-1]  # "runn" → "run", "embedd" → "embed"
    return word


def _has_vowel(stem: str) -> bool:
    return any(c in "aeiouy" for c in stem)


def _idf(hits: Sequence[Sequence[bool]], words: int) -> list[float]:
    """Rarer question words count more, so a match on "pgvector" beats one on "use"."""
    total = len(hits)
    return [math.log(1.0 + total / (1 + sum(row[i] for row in hits))) for i in range(words)]


def _near_duplicate(a: _Sentence, b: _Sentence) -> bool:
    if not a.keys or not b.keys:
        return a.text == b.text
    return len(a.keys & b.keys) / len(a.keys | b.keys) >= _DUPLICATE_JACCARD


def _word_count(text: str) -> int:
    return len(text.split())
