"""Providers are chosen by settings through the registry."""

from __future__ import annotations

import pytest

from parley.errors import ConfigurationError
from parley.providers.embeddings.base import Embedder
from parley.providers.llm.base import LLM
from parley.providers.registry import build_embedder, build_llm, build_token_counter
from parley.settings import ChunkingSettings, EmbeddingSettings, LLMSettings


@pytest.mark.parametrize(
    ("settings", "name"),
    [
        (LLMSettings(), "extractive"),
        (LLMSettings(provider="fake"), "fake"),
        (LLMSettings(provider="openai", model="m", api_key="k"), "openai"),
        (
            LLMSettings(provider="openai", model="llama3", base_url="http://127.0.0.1:9/v1"),
            "openai",
        ),
        (LLMSettings(provider="anthropic", model="m", api_key="k"), "anthropic"),
    ],
)
async def test_llm_by_name(settings: LLMSettings, name: str) -> None:
    llm = build_llm(settings)
    try:
        assert isinstance(llm, LLM) and llm.name == name
    finally:
        await llm.aclose()


def test_generative_llm_needs_a_model() -> None:
    with pytest.raises(ConfigurationError, match="PARLEY_LLM__MODEL"):
        build_llm(LLMSettings(provider="openai", api_key="k"))


async def test_embedders_by_name() -> None:
    local = build_embedder(EmbeddingSettings())
    fake = build_embedder(EmbeddingSettings(provider="fake", dimension=32))
    remote = build_embedder(
        EmbeddingSettings(provider="openai", model="e", base_url="http://127.0.0.1:9/v1")
    )
    for embedder in (local, fake, remote):
        assert isinstance(embedder, Embedder)
        await embedder.aclose()
    assert local.dimension == 384 and fake.dimension == 32


def test_token_counters_by_name() -> None:
    assert build_token_counter(ChunkingSettings()).name == "minilm-wordpiece"
    assert build_token_counter(ChunkingSettings(tokenizer="approx")).name == "approx"
