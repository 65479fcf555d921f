"""Each CLI test gets its own data dir, fake models and no stray PARLEY_ settings or .env."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The data dir of a fresh embedded installation (not created yet)."""
    data = tmp_path / "data"
    for name in [k for k in os.environ if k.startswith("PARLEY_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PARLEY_DATA_DIR", str(data))
    monkeypatch.setenv("PARLEY_EMBEDDINGS__PROVIDER", "fake")
    monkeypatch.setenv("PARLEY_EMBEDDINGS__DIMENSION", "64")
    monkeypatch.setenv("PARLEY_CHUNKING__TOKENIZER", "approx")
    monkeypatch.setenv("PARLEY_SECURITY__ARGON2_MEMORY_KIB", "1024")
    monkeypatch.setenv("PARLEY_SECURITY__ARGON2_TIME_COST", "1")
    monkeypatch.chdir(tmp_path)  # no stray .env is read
    return data
