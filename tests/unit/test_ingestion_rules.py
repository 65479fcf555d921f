"""Pure rules used by ingestion."""

from __future__ import annotations

import pytest

from parley.services.ingestion import sanitize_filename


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../etc/passwd", "passwd"),
        ("..\\..\\Windows\\system.ini", "system.ini"),
        ("we<ird>:na|me?.txt", "we_ird_na_me_.txt"),
        ("ctrl\x00\x01chars.md", "ctrl_chars.md"),
        ("   ", "unnamed"),
        ("..", "unnamed"),
        ("a" * 300 + ".pdf", "a" * 196 + ".pdf"),
    ],
)
def test_sanitize_filename(raw: str, expected: str) -> None:
    assert sanitize_filename(raw) == expected
