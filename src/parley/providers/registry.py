"""Name → factory for every port. Adapters (and their SDKs) are imported only when chosen."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from parley.errors import ConfigurationError
from parley.providers.embeddings.base import Embedder
from parley.providers.llm.base import LLM
from parley.providers.tokenizers.base import TokenCounter
from parley.providers.vectors.base import VectorIndex
from parley.settings import ChunkingSettings, EmbeddingSettings, LLMSettings, Settings

T = TypeVar("T")


def _secret(value: object) -> str | None:
    getter = getattr(value, "get_secret_value", None)
    return getter() if getter is not None else None


def _local_embedder(s: EmbeddingSettings) -> Embedder:
    from parley.providers.embeddings.local import LocalOnnxEmbedder

    return LocalOnnxEmbedder(batch_size=s.batch_size, max_tokens=s.max_tokens, threads=s.threads)


def _openai_embedder(s: EmbeddingSettings) -> Embedder:
    from parley.providers.embeddings.openai import OpenAIEmbedder

    return OpenAIEmbedder(
        model=s.model,
        dimension=s.dimension,
        base_url=s.base_url,
        api_key=_secret(s.api_key),
        timeout_s=s.timeout_s,
        batch_size=s.batch_size,
    )


def _fake_embedder(s: EmbeddingSettings) -> Embedder:
    from parley.providers.embeddings.fake import FakeEmbedder

    return FakeEmbedder(dimension=s.dimension)


EMBEDDERS: dict[str, Callable[[EmbeddingSettings], Embedder]] = {
    "local": _local_embedder,
    "openai": _openai_embedder,
    "fake": _fake_embedder,
}


def _extractive_llm(s: LLMSettings) -> LLM:
    from parley.providers.llm.extractive import ExtractiveLLM

    return ExtractiveLLM()


def _model(s: LLMSettings) -> str:
    if not s.model:
        raise ConfigurationError(f"set PARLEY_LLM__MODEL to use the {s.provider} LLM provider")
    return s.model


def _openai_llm(s: LLMSettings) -> LLM:
    from parley.providers.llm.openai import OpenAILLM

    return OpenAILLM(
        model=_model(s),
        base_url=s.base_url,
        api_key=_secret(s.api_key),
        timeout_s=s.timeout_s,
        connect_timeout_s=s.connect_timeout_s,
        max_connections=s.max_connections,
    )


def _anthropic_llm(s: LLMSettings) -> LLM:
    from parley.providers.llm.anthropic import AnthropicLLM

    return AnthropicLLM(
        model=_model(s),
        base_url=s.base_url,
        api_key=_secret(s.api_key),
        timeout_s=s.timeout_s,
        connect_timeout_s=s.connect_timeout_s,
        max_connections=s.max_connections,
    )


def _fake_llm(s: LLMSettings) -> LLM:
    from parley.providers.llm.fake import FakeLLM

    return FakeLLM()


LLMS: dict[str, Callable[[LLMSettings], LLM]] = {
    "extractive": _extractive_llm,
    "openai": _openai_llm,
    "anthropic": _anthropic_llm,
    "fake": _fake_llm,
}


def _local_counter() -> TokenCounter:
    from parley.providers.tokenizers.hf import HFTokenCounter

    return HFTokenCounter()


def _approx_counter() -> TokenCounter:
    from parley.providers.tokenizers.approx import ApproxTokenCounter

    return ApproxTokenCounter()


TOKEN_COUNTERS: dict[str, Callable[[], TokenCounter]] = {
    "local": _local_counter,
    "approx": _approx_counter,
}


def build_embedder(settings: EmbeddingSettings) -> Embedder:
    """The configured embedder."""
    return _pick(EMBEDDERS, settings.provider, "embeddings.provider")(settings)


def build_llm(settings: LLMSettings) -> LLM:
    """The configured LLM (``extractive`` when none is configured)."""
    return _pick(LLMS, settings.provider, "llm.provider")(settings)


def build_token_counter(settings: ChunkingSettings) -> TokenCounter:
    """The configured token counter."""
    return _pick(TOKEN_COUNTERS, settings.tokenizer, "chunking.tokenizer")()


def build_vector_index(settings: Settings, *, dimension: int) -> VectorIndex:
    """The in-process vector index, persisting large (HNSW) copies under the data dir."""
    from parley.providers.vectors.memory import InMemoryVectorIndex

    r = settings.retrieval
    persist: Path = settings.data_dir / "vectors"
    return InMemoryVectorIndex(
        persist_dir=persist,
        hnsw_threshold=r.hnsw_threshold,
        connectivity=r.hnsw_connectivity,
        expansion_add=r.hnsw_expansion_add,
        expansion_search=r.hnsw_expansion_search,
        dimension=dimension,
    )


def _pick(table: dict[str, T], name: str, setting: str) -> T:
    try:
        return table[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown {setting} {name!r}; choose one of {', '.join(sorted(table))}"
        ) from None
