"""Markdown: one section per ATX heading, with the heading path as the section heading."""

from __future__ import annotations

import re

from parley.domain.documents import ParsedDocument, Section
from parley.services.parsing.common import HeadingTrail, build_document, decode_text, title_or

# CommonMark ATX heading: up to 3 spaces, 1-6 '#', then space or end; optional closing '#'s.
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def parse_markdown(data: bytes, *, fallback_title: str) -> ParsedDocument:
    """Split markdown on ATX headings; '#' lines inside code fences are not headings."""
    trail = HeadingTrail()
    sections: list[Section] = []
    body: list[str] = []
    title: str | None = None
    fence: str | None = None

    def flush() -> None:
        sections.append(Section(text="\n".join(body), heading=trail.path))
        body.clear()

    for line in decode_text(data).split("\n"):
        fence, in_code = _track_fence(line, fence)
        match = None if in_code else _ATX.match(line)
        if match is None:
            body.append(line)
            continue
        flush()
        level, text = len(match.group(1)), (match.group(2) or "").strip()
        if level == 1 and title is None and text:
            title = text
        trail.enter(level, text)
    flush()
    return build_document(title=title_or(title, fallback_title), sections=sections)


def _track_fence(line: str, fence: str | None) -> tuple[str | None, bool]:
    """New fence state and whether ``line`` is code (fence lines themselves count as code)."""
    match = _FENCE.match(line)
    if fence is None:
        return (match.group(1), True) if match else (None, False)
    # A fence closes only with the same character, at least as long, and nothing after it.
    if match is None:
        return fence, True
    marker = match.group(1)
    closes = marker[0] == fence[0] and len(marker) >= len(fence)
    if closes and not line.strip()[len(marker) :].strip():
        return None, True
    return fence, True
