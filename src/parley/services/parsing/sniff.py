"""Decide a file's media type from its name, its declared type and, above all, its bytes."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from typing import Literal

from parley.errors import UnsupportedMediaType

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
    """Classify ``data`` by its magic bytes, zip contents and UTF-8 validity."""
    if data.startswith(b"%PDF-"):
        return Sniffed("pdf", "a PDF")
    if data.startswith(b"PK\x03\x04"):
        return _sniff_zip(data)
    for magic, description in _MAGIC:
        if data.startswith(magic):
            return Sniffed("other", description)
    if b"\x00" in data:
        return Sniffed("other", "binary data (contains NUL bytes)")
    try:
        data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return Sniffed("other", "binary or non-UTF-8 data")
    return Sniffed("text", "UTF-8 text")


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

    The extension picks the format; the bytes must match that format's family; a specific
    declared type must not contradict the content. Raises ``UnsupportedMediaType`` otherwise.
    """
    name = basename(filename) or "upload"
    declared = normalize_declared(declared_mime)
    sniffed = sniff(data)
    ext = extension(name)
    if ext:
        mime = EXTENSIONS.get(ext)
        if mime is None:
            raise UnsupportedMediaType(
                f"{name!r}: extension {ext!r} is not supported "
                f"(supported: {', '.join(sorted(EXTENSIONS))})"
            )
    else:
        mime = _mime_without_extension(name, declared, sniffed)
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


def _mime_without_extension(name: str, declared: str | None, sniffed: Sniffed) -> str:
    if declared in SUPPORTED:
        return declared
    if sniffed.family == "pdf":
        return PDF
    if sniffed.family == "docx":
        return DOCX
    raise UnsupportedMediaType(
        f"{name!r} has no extension and no supported declared type; cannot tell its format"
    )
