"""Decide a file's media type from its name, its declared type and, above all, its bytes."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Literal

from parley.errors import UnsupportedMediaType
from parley.services.parsing.encoding import SNIFF_BYTES, sniff_encoding

TEXT = "text/plain"
MARKDOWN = "text/markdown"
HTML = "text/html"
PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
CSV = "text/csv"
JSON = "application/json"

SUPPORTED: frozenset[str] = frozenset({TEXT, MARKDOWN, HTML, PDF, DOCX, CSV, JSON})

EXTENSIONS: dict[str, str] = {
    ".txt": TEXT,
    ".md": MARKDOWN,
    ".markdown": MARKDOWN,
    ".html": HTML,
    ".htm": HTML,
    ".pdf": PDF,
    ".docx": DOCX,
    ".csv": CSV,
    ".tsv": CSV,  # the CSV parser sniffs tabs as well as commas and semicolons
    ".json": JSON,
}

Family = Literal["pdf", "docx", "text", "other"]

# Types clients send when they do not know better; they say nothing about the content.
_GENERIC_DECLARED = frozenset(
    {"", "application/octet-stream", "binary/octet-stream", "application/unknown"}
)

# Spellings browsers and OSes really send for the supported types (Windows reports .csv as
# an Excel type; a .docx is a zip, so some clients call it one).
_DECLARED_ALIASES: dict[str, str] = {
    "application/x-pdf": PDF,
    "text/x-markdown": MARKDOWN,
    "text/md": MARKDOWN,
    "application/xhtml+xml": HTML,
    "application/csv": CSV,
    "text/x-csv": CSV,
    "text/comma-separated-values": CSV,
    "application/vnd.ms-excel": CSV,
    "text/json": JSON,
    "application/x-json": JSON,
    "application/zip": DOCX,
    "application/x-zip-compressed": DOCX,
}

# How a detected codec reads in error details ("… but its content is UTF-8 text").
_TEXT_DESCRIPTIONS = {"utf-8": "UTF-8 text", "utf-8-sig": "UTF-8 text"}

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"RIFF", "a RIFF media file"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy or encrypted Office file"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"\x7fELF", "an executable"),
)


@dataclass(frozen=True, slots=True)
class Sniffed:
    """What the bytes look like: a family and a human description for error details."""

    family: Family
    description: str


def family_of(mime: str) -> Family:
    """The content family a supported media type belongs to."""
    if mime == PDF:
        return "pdf"
    if mime == DOCX:
        return "docx"
    return "text"


def sniff(data: bytes) -> Sniffed:
    """Classify ``data`` by its magic bytes, zip contents and, for text, its first bytes.

    Only the first ``SNIFF_BYTES`` are examined for text, so the cost is bounded.
    """
    if data.startswith(b"%PDF-"):
        return Sniffed("pdf", "a PDF")
    if data.startswith(b"PK\x03\x04"):
        return _sniff_zip(data)
    for magic, description in _MAGIC:
        if data.startswith(magic):
            return Sniffed("other", description)
    sample = data[:SNIFF_BYTES]
    codec = sniff_encoding(sample, cut=len(sample) < len(data))
    if codec is None:
        return Sniffed("other", "binary data (not text in any known encoding)")
    return Sniffed("text", _TEXT_DESCRIPTIONS.get(codec, f"text ({codec})"))


def _sniff_zip(data: bytes) -> Sniffed:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, ValueError, OSError):
        return Sniffed("other", "a corrupt zip archive")
    if "word/document.xml" in names:
        return Sniffed("docx", "a Word document")
    return Sniffed("other", "a zip archive that is not a Word document")


def basename(filename: str) -> str:
    """The last path component; some clients send full Windows paths as the filename."""
    return filename.replace("\\", "/").rsplit("/", 1)[-1]


def extension(filename: str) -> str:
    """Lower-cased extension including the dot, or ``""``."""
    name = basename(filename)
    dot = name.rfind(".")
    return name[dot:].lower() if dot > 0 else ""


def normalize_declared(declared_mime: str | None) -> str | None:
    """Canonical supported type for a declared type; ``None`` when it carries no information.

    Unknown-but-specific types are returned lower-cased without parameters so the caller can
    still compare their family.
    """
    if declared_mime is None:
        return None
    mime = declared_mime.split(";", 1)[0].strip().lower()
    if mime in _GENERIC_DECLARED:
        return None
    return _DECLARED_ALIASES.get(mime, mime)


def _declared_family(mime: str) -> Family:
    if mime in SUPPORTED:
        return family_of(mime)
    if mime.startswith("text/"):
        return "text"
    return "other"


def detect_mime(data: bytes, *, filename: str, declared_mime: str | None = None) -> str:
    """Supported media type of an upload, checked against its content.

    A known extension picks its parser and the bytes must match that format's family; any
    other name is accepted when the bytes are text (parsed as plain text, or as the supported
    type it was declared as), a PDF or a Word document. A specific declared type must not
    contradict the content. Raises ``UnsupportedMediaType`` otherwise.
    """
    name = basename(filename) or "upload"
    declared = normalize_declared(declared_mime)
    sniffed = sniff(data)
    mime = EXTENSIONS.get(extension(name)) or _mime_from_content(name, declared, sniffed)
    expected = family_of(mime)
    if sniffed.family != expected:
        raise UnsupportedMediaType(
            f"{name!r} is named as {mime} but its content is {sniffed.description}"
        )
    if declared is not None and _declared_family(declared) != expected:
        raise UnsupportedMediaType(
            f"{name!r} was declared as {declared} but its content is {sniffed.description}"
        )
    return mime


def supported_types() -> str:
    """What uploads are accepted, in words, for error details and help text."""
    families = {ext: family_of(mime) for ext, mime in EXTENSIONS.items()}
    parsed = sorted(ext for ext, family in families.items() if family == "text" and ext != ".txt")
    binary = sorted(ext for ext, family in families.items() if family != "text")
    return (
        "any text file in UTF-8 or a legacy encoding such as latin-1 "
        f"({_and(parsed)} are parsed by format), plus {_and(binary)} documents"
    )


def _and(items: list[str]) -> str:
    return f"{', '.join(items[:-1])} and {items[-1]}" if len(items) > 1 else "".join(items)


def _mime_from_content(name: str, declared: str | None, sniffed: Sniffed) -> str:
    """Type of a file whose name says nothing: declared if supported, else from its bytes."""
    if declared in SUPPORTED:
        return declared
    if sniffed.family == "pdf":
        return PDF
    if sniffed.family == "docx":
        return DOCX
    if sniffed.family == "text":
        return TEXT
    raise UnsupportedMediaType(
        f"{name!r} is {sniffed.description}, which is not supported; "
        f"Parley accepts {supported_types()}"
    )
