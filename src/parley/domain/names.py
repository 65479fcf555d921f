"""Names people read: document paths and collection names. Pure rules, no I/O.

Two threats shape them. *Display spoofing*: Unicode format characters (category Cf: the bidi
overrides and isolates U+202A..U+202E and U+2066..U+2069, the marks U+200E, U+200F and U+061C,
zero-width characters U+200B..U+200D, U+FEFF …) are invisible yet reorder or split what is
shown, so ``invoice\\u202efdp.exe.txt`` reads as ``invoicetxt.exe.pdf``. They are removed
from file paths (a file cannot be asked to rename itself) and refused in names typed by a
person. *Paths*: a document is keyed by the path its upload gave (``guide/index.html``),
which must stay a plain relative path whatever a client sends.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

from parley.errors import InvalidInput

# The documents.source and job item filename columns are String(500).
MAX_PATH_CHARS = 500

# C0 and C1 controls (C1 holds U+009B, a terminal's CSI), line/paragraph separators, unpaired
# surrogates (unstorable) and what Windows forbids in a file name.
_UNSAFE_SEGMENT = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff:*?\"<>|]+")
_DRIVE = re.compile(r"^[A-Za-z]:(?=/|$)")
_HIDDEN_CATEGORIES = frozenset({"Cf", "Cc", "Zl", "Zp"})


def without_format_chars(text: str) -> str:
    """``text`` with every format character (Unicode category Cf) removed, then NFC."""
    # Removed first: a zero-width character between a letter and its accent would
    # otherwise keep them from composing.
    kept = "".join(c for c in text if unicodedata.category(c) != "Cf")
    return unicodedata.normalize("NFC", kept)


def hidden_character(text: str) -> str | None:
    """The first character of ``text`` that is invisible or a control, if any.

    That is a format character (Cf), a C0/C1 control or a line/paragraph separator: what
    would make a name display as something other than what it is.
    """
    for c in text:
        if unicodedata.category(c) in _HIDDEN_CATEGORIES:
            return c
    return None


def require_visible(value: str | None, *, field: str) -> None:
    """InvalidInput (422) if a name or title holds an invisible or control character.

    Names are refused rather than cleaned: a collection is also found *by* its name, so what
    is stored must be exactly what was given, and what was given must read as it is.
    """
    hidden = None if value is None else hidden_character(value)
    if hidden is not None:
        raise InvalidInput(
            f"{field} contains an invisible or control character (U+{ord(hidden):04X}) that "
            "could make it display as something else; remove it",
            field=field,
        )


def clean_relative_path(
    name: str, *, max_segment_chars: int = 200, max_chars: int = MAX_PATH_CHARS
) -> str:
    """A safe, readable relative path for an uploaded file's name; never empty.

    ``\\`` becomes ``/``; a drive letter, leading ``/``, empty and ``.`` segments go; ``..``
    is resolved while it stays inside the root (``a/b/../c.txt`` → ``a/c.txt``), but a name
    that climbs above its root is not trusted for its folders and keeps only its last
    segment (``../../etc/passwd`` → ``passwd``). Each segment loses format characters,
    turns controls and ``:*?"<>|`` into ``_``, is trimmed of spaces and dots and capped at
    ``max_segment_chars`` keeping its extension. A path longer than ``max_chars`` keeps its
    last folders behind a short hash of the whole (``…1a2b3c4d/deep/file.md``), so two
    long paths stay two documents.
    """
    text = _DRIVE.sub("", without_format_chars(name).replace("\\", "/"))
    segment_cap = min(max_segment_chars, max_chars)
    kept: list[str] = []
    escaped = False
    for raw in text.split("/"):
        if raw == "..":
            if kept:
                kept.pop()
            else:
                escaped = True
            continue
        segment = _clean_segment(raw, segment_cap)
        if segment:
            kept.append(segment)
    if escaped:
        kept = kept[-1:]
    return _fit(kept, max_chars) if kept else "unnamed"


def _clean_segment(raw: str, cap: int) -> str:
    segment = _UNSAFE_SEGMENT.sub("_", raw).strip(" .")
    if len(segment) > cap:
        stem, dot, ext = segment.rpartition(".")
        # An "extension" as long as the cap is just more name: cut it like the rest.
        keep_ext = bool(stem and dot) and len(ext) < cap // 2
        segment = (stem[: cap - len(ext) - 1] + dot + ext) if keep_ext else segment[:cap]
    return segment


def _fit(segments: list[str], max_chars: int) -> str:
    path = "/".join(segments)
    if len(path) <= max_chars:
        return path
    digest = hashlib.sha256(path.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    marker = f"…{digest}"
    tail = [segments[-1]]
    for segment in reversed(segments[:-1]):
        if len(marker) + len(segment) + 2 + len("/".join(tail)) > max_chars:
            break
        tail.insert(0, segment)
    fitted = "/".join([marker, *tail])
    # Only when the last segment alone nearly fills the cap: the file name is worth more.
    return fitted if len(fitted) <= max_chars else segments[-1]
