"""Names people read: relative document paths and visible collection names."""

from __future__ import annotations

import pytest

from parley.domain.names import (
    MAX_PATH_CHARS,
    clean_relative_path,
    hidden_character,
    require_visible,
    without_format_chars,
)
from parley.errors import InvalidInput
from parley.services.ingestion import sanitize_filename

# Bidi controls and other format characters (Unicode category Cf) the rules must catch.
BIDI = [
    *(chr(c) for c in range(0x202A, 0x202F)),
    *(chr(c) for c in range(0x2066, 0x206A)),
    "\u200e",
    "\u200f",
    "\u061c",
]
ZERO_WIDTH = ["\u200b", "\u200c", "\u200d", "\ufeff", "\u00ad", "\u2060"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        # Folders are kept: this is what keeps a/README.md and b/README.md apart.
        ("a/README.md", "a/README.md"),
        ("guide/index.html", "guide/index.html"),
        ("docs\\api\\index.html", "docs/api/index.html"),
        # Normalised to a plain relative path.
        ("/abs/x.txt", "abs/x.txt"),
        ("C:\\x\\y.txt", "x/y.txt"),
        ("c:/x/y.txt", "x/y.txt"),
        ("\\\\server\\share\\x.txt", "server/share/x.txt"),
        ("a/./b/../c.txt", "a/c.txt"),
        ("./a//b///c.txt", "a/b/c.txt"),
        ("a/b/..", "a"),
        # Climbing above the root: the folders are not trusted, the file name is kept.
        ("../../etc/passwd", "passwd"),
        ("..\\..\\Windows\\system.ini", "system.ini"),
        ("a/../../b/c.txt", "c.txt"),
        ("..", "unnamed"),
        # Per segment: controls and Windows-reserved characters, edge dots and spaces.
        ("a:b.txt", "a_b.txt"),
        ("C:x.txt", "C_x.txt"),
        ("dir\x00/f\x1b[31m.txt", "dir_/f_[31m.txt"),
        ("c1\x9b.txt", "c1_.txt"),
        ("line\u2028break.txt", "line_break.txt"),
        (" spaced / .hidden/ name. ", "spaced/hidden/name"),
        ("/ / . /", "unnamed"),
        # Spoofing characters are removed, not replaced.
        ("invoice\u202efdp.exe.txt", "invoicefdp.exe.txt"),
        ("dir\u2066/re\u200bport\ufeff.md", "dir/report.md"),
        (".\u200b./secret.txt", "secret.txt"),
        ("e\u200b\u0301.txt", "\u00e9.txt"),
    ],
)
def test_clean_relative_path(raw: str, expected: str) -> None:
    assert clean_relative_path(raw) == expected


@pytest.mark.parametrize("char", BIDI + ZERO_WIDTH)
def test_every_format_character_is_removed_from_paths(char: str) -> None:
    assert clean_relative_path(f"a{char}b/c{char}.txt") == "ab/c.txt"
    assert without_format_chars(f"x{char}y") == "xy"


def test_segments_are_capped_keeping_the_extension() -> None:
    cleaned = clean_relative_path("d" * 300 + "/" + "a" * 300 + ".pdf", max_segment_chars=50)
    folder, name = cleaned.split("/")
    assert folder == "d" * 50 and name == "a" * 46 + ".pdf"
    # A very long "extension" is just more name.
    assert clean_relative_path("a." + "b" * 300, max_segment_chars=20) == "a." + "b" * 18


def test_a_long_path_keeps_its_last_folders_and_stays_distinct() -> None:
    deep = "/".join(f"level{i:02d}" + "x" * 40 for i in range(20))
    one = clean_relative_path(f"{deep}/one/README.md")
    two = clean_relative_path(f"{deep.replace('level00', 'other00')}/one/README.md")
    assert len(one) <= MAX_PATH_CHARS and len(two) <= MAX_PATH_CHARS
    assert one.endswith("/one/README.md") and one.startswith("…")
    assert one != two  # the hash of the whole path tells them apart
    assert clean_relative_path(f"{deep}/one/README.md") == one  # and is stable
    assert clean_relative_path("x/" * 10 + "f.txt", max_chars=12) == "f.txt"


def test_sanitize_filename_is_the_relative_path_with_the_name_limit() -> None:
    assert sanitize_filename("a/README.md") == "a/README.md"
    assert sanitize_filename("x" * 30 + "/y.md", max_chars=10) == "x" * 10 + "/y.md"


@pytest.mark.parametrize("char", [*BIDI, *ZERO_WIDTH, "\x00", "\t", "\x1b", "\x85", "\u2029"])
def test_hidden_characters_are_found_and_refused(char: str) -> None:
    assert hidden_character(f"name{char}x") == char
    with pytest.raises(InvalidInput) as refused:
        require_visible(f"Fin{char}ance", field="name")
    assert f"U+{ord(char):04X}" in refused.value.detail and refused.value.extra["field"] == "name"


@pytest.mark.parametrize("name", ["Finance", "ünïcødé 🦄", "中文 한국어", "e\u0301", "a  b", None])
def test_visible_names_pass(name: str | None) -> None:
    if name is not None:
        assert hidden_character(name) is None
    require_visible(name, field="name")
