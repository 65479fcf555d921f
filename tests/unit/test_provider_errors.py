"""A model server that cannot be reached is named by URL and setting, never with credentials.

The adapters run on their real SDKs against a loopback port nobody listens on (bound, then
closed), so the connection is refused at once without leaving the machine.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from parley.domain.chat import ChatMessage
from parley.errors import ProviderUnavailable
from parley.providers.llm.base import LLM, GenerationRequest
from parley.providers.llm.sdk_support import public_url

SECRET = "hunter2"
REQUEST = GenerationRequest(messages=[ChatMessage(role="user", content="hello")])


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that was free a moment ago and has no listener now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    yield port


def _leaks(message: str) -> bool:
    return SECRET in message or "parley-user" in message


def _llm(vendor: str, port: int) -> LLM:
    options: dict[str, Any] = {
        "model": "m",
        # Credentials in the URL and as the key: neither may appear in an error.
        "base_url": f"http://parley-user:{SECRET}@127.0.0.1:{port}/v1?key={SECRET}",
        "api_key": SECRET,
        "timeout_s": 5.0,
        "connect_timeout_s": 2.0,
        "max_connections": 1,
        "max_retries": 0,
    }
    if vendor == "openai":
        pytest.importorskip("openai")
        from parley.providers.llm.openai import OpenAILLM

        return OpenAILLM(**options)
    pytest.importorskip("anthropic")
    from parley.providers.llm.anthropic import AnthropicLLM

    return AnthropicLLM(**options)


@pytest.mark.parametrize("vendor", ["openai", "anthropic"])
@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_unreachable_llm_names_url_and_setting(
    vendor: str, mode: str, closed_port: int
) -> None:
    llm = _llm(vendor, closed_port)
    try:
        with pytest.raises(ProviderUnavailable) as caught:
            if mode == "complete":
                await llm.complete(REQUEST)
            else:
                async for _ in llm.stream(REQUEST):
                    pass
    finally:
        await llm.aclose()
    url = f"http://127.0.0.1:{closed_port}/v1"
    assert caught.value.detail == f"{vendor} LLM at {url} is not reachable (PARLEY_LLM__BASE_URL)"
    assert caught.value.extra["url"] == url
    assert not _leaks(str(caught.value)) and not _leaks(repr(caught.value.extra))


async def test_unreachable_embeddings_server_names_url_and_setting(closed_port: int) -> None:
    pytest.importorskip("openai")
    from parley.providers.embeddings.openai import OpenAIEmbedder

    embedder = OpenAIEmbedder(
        model="e",
        dimension=3,
        base_url=f"http://parley-user:{SECRET}@127.0.0.1:{closed_port}/v1/",
        api_key=SECRET,
        timeout_s=5.0,
        max_retries=0,
    )
    try:
        with pytest.raises(ProviderUnavailable) as caught:
            await embedder.embed(["hello"])
    finally:
        await embedder.aclose()
    url = f"http://127.0.0.1:{closed_port}/v1"
    assert caught.value.detail == (
        f"openai embeddings at {url} is not reachable (PARLEY_EMBEDDINGS__BASE_URL)"
    )
    assert not _leaks(str(caught.value))


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.openai.com/v1/", "https://api.openai.com/v1"),
        ("http://u:p%40ss@10.0.0.5:8000/v1", "http://10.0.0.5:8000/v1"),
        ("http://:token@host/v1?api-key=k#frag", "http://host/v1"),
        ("http://user@[::1]:11434/v1", "http://[::1]:11434/v1"),
        ("http://host:notaport/v1", "<invalid URL>"),
    ],
)
def test_public_url_drops_credentials(url: str, shown: str) -> None:
    assert public_url(url) == shown


def test_api_clients_are_not_shown_the_internal_url() -> None:
    # The operator's detail names the server; the HTTP answer keeps the rest of the sentence.
    from parley.errors import ProviderUnavailable

    exc = ProviderUnavailable(
        "openai LLM at http://10.0.0.5:11434/v1 is not reachable (PARLEY_LLM__BASE_URL)",
        url="http://10.0.0.5:11434/v1",
    )
    assert exc.public_detail == "openai LLM is not reachable (PARLEY_LLM__BASE_URL)"
    assert ProviderUnavailable("plain").public_detail == "plain"
