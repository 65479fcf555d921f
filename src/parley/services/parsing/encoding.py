"""Is it text, and in which encoding? A BOM, else UTF-8, else a legacy-encoding guess.

Text is judged from a bounded sample (``SNIFF_BYTES``) so the verdict costs the same for a
1 KiB note and a 50 MiB log. Binary is: a NUL byte (never found in UTF-8 or 8-bit text; git
uses the same rule), or too many control characters once decoded.
"""

from __future__ import annotations

import codecs
import re

from parley.errors import ParseError

SNIFF_BYTES = 64 * 1024
# Share of control characters above which decoded "text" is really binary. Real text has
# almost none (tab, newlines, form feed and ESC of coloured logs are allowed and not counted);
# the NUL rule catches nearly every binary format, this catches short or NUL-free ones.
MAX_CONTROL_RATIO = 0.05
# When the detector finds no encoding, the sample is still text (cp1252) if at least this
# share of its bytes is printable ASCII or whitespace: very short files defeat statistics.
_MIN_ASCII_SHARE = 0.5
# cp1252 is the legacy encoding most files in the wild use (HTML5 decodes "latin-1" as it),
# and on short Western samples the detector's first choice is often an exotic code page
# that decodes the same bytes differently, so it wins whenever it decodes cleanly.
_PREFERRED_LEGACY = "cp1252"
_LINE_LOOKBACK = 4096  # how far back from a cut sample's end to look for a line end

# Longest BOM first: the UTF-32-LE BOM starts with the UTF-16-LE one.
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CONTROL = re.compile("[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f-\x9f]")
_ASCII_TEXT = bytes(range(0x20, 0x7F)) + b"\t\n\r\f\v"


def sniff_encoding(sample: bytes, *, cut: bool = False) -> str | None:
    """Codec that decodes ``sample`` as text, or ``None`` when it looks binary.

    ``cut`` says the sample is a prefix of a longer file, so a character split at its end
    is not an error.
    """
    codec = _bom_codec(sample)
    if codec is None:
        if b"\x00" in sample:
            return None
        if cut:
            sample = _to_line_end(sample)
        codec = "utf-8" if _decode(sample, "utf-8", cut=cut) is not None else _legacy(sample)
        if codec is None:
            return None
    text = _decode(sample, codec, cut=cut)
    if text is None or len(_CONTROL.findall(text)) > MAX_CONTROL_RATIO * max(len(text), 1):
        return None
    return codec


def decode_bytes(data: bytes) -> tuple[str, str]:
    """The whole of ``data`` as text and the codec used; raises ``ParseError`` if binary.

    UTF-8 is checked over the whole file (one C-speed pass that also yields the text); only
    the statistical guess is bounded, on the sample where the first non-UTF-8 byte sits.
    """
    codec = _bom_codec(data)
    if codec is not None:
        return data.decode(codec, errors="replace"), codec
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        where, truncated = exc.start, exc.reason == "unexpected end of data"
    # Cut inside its last character, or real multi-byte UTF-8 before the first bad byte: a
    # UTF-8 file with a few corrupt bytes (a legacy file is plain ASCII up to that point).
    if (truncated and where >= len(data) - 3) or not data[:where].isascii():
        return data.decode("utf-8", errors="replace"), "utf-8"
    # Look where the legacy bytes are: the start, or past an all-UTF-8 (usually ASCII) head.
    start = 0 if where < SNIFF_BYTES else where
    sample = data[start : start + SNIFF_BYTES]
    codec = sniff_encoding(sample, cut=start + len(sample) < len(data))
    if codec is None:
        raise ParseError(f"not text: binary data near byte {where}")
    # Bytes past the sample may be undefined in the chosen code page: replace, never fail.
    return data.decode(codec, errors="replace"), codec


def _bom_codec(data: bytes) -> str | None:
    for bom, codec in _BOMS:
        if data.startswith(bom):
            return codec
    return None


def _to_line_end(sample: bytes) -> bytes:
    """Drop a trailing partial line so no multi-byte character is split: ``\\n`` is never a
    trail byte in ASCII-compatible encodings. A sample with no recent newline is kept."""
    end = sample.rfind(b"\n", max(0, len(sample) - _LINE_LOOKBACK))
    return sample[: end + 1] if end > 0 else sample


def _decode(sample: bytes, codec: str, *, cut: bool) -> str | None:
    decoder = codecs.getincrementaldecoder(codec)(errors="strict")
    try:
        text: str = decoder.decode(sample, final=not cut)
    except (UnicodeDecodeError, LookupError):
        return None
    return text


def _legacy(sample: bytes) -> str | None:
    """Best legacy (non-UTF) encoding of a NUL-free sample, or ``None`` if it looks binary."""
    # Imported lazily: only non-UTF-8 uploads pay for the detector.
    from charset_normalizer import from_bytes

    matches = from_bytes(sample)
    for match in matches:
        if _PREFERRED_LEGACY in (match.encoding, *match.could_be_from_charset):
            return _PREFERRED_LEGACY
    best = matches.best()
    if best is not None:
        return best.encoding
    ascii_text = len(sample) - len(sample.translate(None, _ASCII_TEXT))
    return _PREFERRED_LEGACY if ascii_text >= _MIN_ASCII_SHARE * len(sample) else None
