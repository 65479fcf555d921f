"""Text is text: any name, UTF-8 or a legacy encoding; binary refused whatever its name."""

from __future__ import annotations

import os

import pytest

from parley.errors import ParseError, UnsupportedMediaType
from parley.services.parsing import detect_mime, parse_document, supported_types
from parley.services.parsing.encoding import SNIFF_BYTES, decode_bytes, sniff_encoding

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + b"\x00" * 32


@pytest.mark.parametrize(
    "filename",
    ["guide.rst", "manual.adoc", "server.log", "main.source", "tool.py", "README", "LICENSE"],
)
def test_utf8_text_with_any_name_is_plain_text(filename: str) -> None:
    data = "Héllo wörld.\nThe night ferry leaves from pier seven.\n".encode()
    assert detect_mime(data, filename=filename) == "text/plain"
    doc = parse_document(data, filename=filename)
    assert doc.meta["mime"] == "text/plain"
    assert doc.sections[0].text.startswith("Héllo wörld.")


def test_known_extensions_keep_their_parsers() -> None:
    assert detect_mime(b"# hi", filename="a.md") == "text/markdown"
    assert detect_mime(b"a\tb\n1\t2\n", filename="a.tsv") == "text/csv"
    doc = parse_document(b"id\tname\n1\tTrail X9\n", filename="models.tsv")
    assert doc.sections[0].text == "id: 1; name: Trail X9"


@pytest.mark.parametrize("codec", ["latin-1", "cp1252"])
def test_legacy_western_text_is_decoded(codec: str) -> None:
    data = "café naïve".encode(codec)
    assert detect_mime(data, filename="menu.txt") == "text/plain"
    assert parse_document(data, filename="menu.txt").sections[0].text == "café naïve"


def test_cp1252_punctuation_is_decoded() -> None:
    text = "He said \u201chello\u201d \u2014 it costs 5\u20ac."
    doc = parse_document(text.encode("cp1252"), filename="quote.log")
    assert doc.sections[0].text == text


def test_longer_cyrillic_legacy_text_is_detected() -> None:
    text = "Привет, как дела? Это тестовый файл на русском языке.\n" * 5
    doc = parse_document(text.encode("cp1251"), filename="notes.txt")
    assert doc.sections[0].text == text.strip()


def test_legacy_encoding_applies_to_format_parsers_too() -> None:
    data = "Modèle,Prix\nCafé,3 €\n".encode("cp1252")
    doc = parse_document(data, filename="menu.csv")
    assert doc.sections[0].text == "Modèle: Café; Prix: 3 €"


def test_utf16_with_bom_is_text() -> None:
    data = "Café au lait.".encode("utf-16")  # the codec writes the BOM
    assert b"\x00" in data
    assert parse_document(data, filename="note.txt").sections[0].text == "Café au lait."


@pytest.mark.parametrize(
    ("data", "filename"),
    [
        (b"\x00\x01\x02\x03binary\x00payload", "blob.weird"),
        (b"\x00\x01\x02\x03binary\x00payload", "noextension"),
        (PNG, "photo.log"),
        (b"\x89PNG\r\n\x1a\n no NULs at all", "photo.rst"),
        (b"hello\x01\x02\x03world\x04\x05\x06" * 20, "controls.dat"),
        (bytes(range(0x80, 0x100)) * 8, "high-bytes.bin"),
    ],
)
def test_binary_is_refused_whatever_its_name(data: bytes, filename: str) -> None:
    with pytest.raises(UnsupportedMediaType) as excinfo:
        parse_document(data, filename=filename)
    assert filename in excinfo.value.detail


def test_refusal_names_what_is_supported() -> None:
    with pytest.raises(UnsupportedMediaType) as excinfo:
        detect_mime(PNG, filename="photo.log")
    assert "any text file" in excinfo.value.detail
    assert ".pdf" in supported_types() and ".docx" in supported_types()


def test_declared_binary_type_still_contradicts_text() -> None:
    with pytest.raises(UnsupportedMediaType):
        detect_mime(b"hello", filename="notes.log", declared_mime="image/png")
    assert detect_mime(b"# hi", filename="README", declared_mime="text/markdown") == (
        "text/markdown"
    )


def test_ansi_coloured_log_is_text() -> None:
    line = "\x1b[32mINFO\x1b[0m request served in 3 ms\n"
    assert detect_mime((line * 50).encode(), filename="app.log") == "text/plain"


def test_sniffing_reads_a_bounded_prefix() -> None:
    # Binary after the sniffed prefix is not looked at by the type check...
    data = b"a" * SNIFF_BYTES + os.urandom(1024) + b"\x00"
    assert detect_mime(data, filename="big.log") == "text/plain"
    # ...and the parser, which sees everything, says clearly that it is not text.
    with pytest.raises(ParseError, match="not text"):
        parse_document(data, filename="big.log")


def test_prefix_cut_inside_a_character_is_still_utf8() -> None:
    data = b"a" * (SNIFF_BYTES - 1) + "é and more".encode()
    assert sniff_encoding(data[:SNIFF_BYTES], cut=True) == "utf-8"
    assert detect_mime(data, filename="cut.txt") == "text/plain"


def test_legacy_bytes_after_an_ascii_prefix_are_decoded() -> None:
    data = b"plain ascii line\n" * (SNIFF_BYTES // 16) + "café crème\n".encode("cp1252")
    text, codec = decode_bytes(data)
    assert codec == "cp1252"
    assert text.endswith("café crème\n")


def test_truncated_utf8_tail_is_utf8() -> None:
    text, codec = decode_bytes("naïve é".encode()[:-1])
    assert codec == "utf-8"
    assert text.startswith("naïve ")


def test_utf8_with_a_stray_bad_byte_stays_utf8() -> None:
    text, codec = decode_bytes("crème brûlée, ".encode() + b"caf\xe9 au lait")
    assert codec == "utf-8"
    assert text == "crème brûlée, caf\ufffd au lait"
