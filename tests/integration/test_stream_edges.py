"""Streaming edge cases.

A client that leaves keeps its partial answer; a failing model stores no answer but keeps
the question (marked failed); the question is stored before the answer streams, so a server
killed mid-answer keeps it too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio.lowlevel
import pytest

from parley.container import Container
from parley.domain.auth import SYSTEM
from parley.domain.chat import StreamDelta
from parley.errors import ProviderTimeout
from parley.providers.llm.base import GenerationRequest
from parley.providers.llm.fake import FakeLLM
from parley.services.ingestion import UploadedFile
from tests.conftest import DOCS


async def session_over_faq(container: Container) -> str:
    cid = (await container.collections.create(actor=SYSTEM, name="faq")).row.id
    data = (DOCS / "faq.json").read_bytes()
    job = await container.ingestion.submit(
        actor=SYSTEM, collection_id=cid, files=[UploadedFile("faq.json", data)]
    )
    await container.runner.run_once(job_id=job.id)
    return (await container.sessions.create(actor=SYSTEM, collection_ids=[cid])).row.id


async def test_client_disconnect_keeps_the_partial_answer(container: Container) -> None:
    sid = await session_over_faq(container)
    turn = await container.chat.prepare(
        actor=SYSTEM, session_id=sid, content="Is the bike waterproof?"
    )
    stream = container.chat.stream(turn)
    assert (await anext(stream))[0] == "sources"
    event, data = await anext(stream)
    assert event == "token"
    await stream.aclose()  # what Starlette does when the client goes away
    messages = (await container.sessions.messages(sid, actor=SYSTEM, limit=10, cursor=None)).items
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1].content == data["text"] and messages[1].finish_reason == "interrupted"


async def test_model_failure_mid_stream_keeps_only_the_question_marked_failed(
    container: Container, fake_llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = await session_over_faq(container)

    async def failing(request: GenerationRequest) -> AsyncIterator[StreamDelta]:
        yield StreamDelta(text="Partial ")
        raise ProviderTimeout("model stalled")

    monkeypatch.setattr(fake_llm, "stream", failing)
    turn = await container.chat.prepare(
        actor=SYSTEM, session_id=sid, content="Is the bike waterproof?"
    )
    events = []
    with pytest.raises(ProviderTimeout):
        async for event, _ in container.chat.stream(turn):
            events.append(event)
    assert events == ["sources", "token"]
    messages = (await container.sessions.messages(sid, actor=SYSTEM, limit=10, cursor=None)).items
    assert [(m.role, m.error_code, m.answered) for m in messages] == [
        ("user", "provider_timeout", False)
    ]


async def test_the_question_is_stored_before_the_answer_streams(
    container: Container, fake_llm: FakeLLM
) -> None:
    """What survives a ``kill -9`` mid-answer: the question, committed as generation began."""
    sid = await session_over_faq(container)
    turn = await container.chat.prepare(
        actor=SYSTEM, session_id=sid, content="Is the bike waterproof?"
    )
    stream = container.chat.stream(turn)
    assert (await anext(stream))[0] == "sources"
    assert (await anext(stream))[0] == "token"
    # Read through another connection while the answer is still streaming.
    messages = (await container.sessions.messages(sid, actor=SYSTEM, limit=10, cursor=None)).items
    assert [(m.role, m.content, m.answered) for m in messages] == [
        ("user", "Is the bike waterproof?", False)
    ]
    events = [event async for event, _ in stream]
    assert events[-1] == "done"


async def test_a_client_leaving_during_the_commit_does_not_store_the_turn_twice(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    import anyio

    from parley.services import uow as uow_module

    sid = await session_over_faq(container)
    turn = await container.chat.prepare(
        actor=SYSTEM, session_id=sid, content="Is the bike waterproof?"
    )
    original = uow_module.UnitOfWork.commit
    scope_box: dict[str, anyio.CancelScope] = {}
    commits: list[None] = []

    async def commit_then_disconnect(self: uow_module.UnitOfWork) -> None:
        await original(self)
        commits.append(None)
        # The client goes away right after the answer's commit (the question's came first).
        if len(commits) == 2 and "scope" in scope_box:
            scope_box.pop("scope").cancel()
            await anyio.lowlevel.checkpoint()

    monkeypatch.setattr(uow_module.UnitOfWork, "commit", commit_then_disconnect)
    with anyio.CancelScope() as scope:
        scope_box["scope"] = scope
        async for _ in container.chat.stream(turn):
            pass
    messages = (await container.sessions.messages(sid, actor=SYSTEM, limit=10, cursor=None)).items
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1].finish_reason == "stop" and messages[1].reply_to_id == messages[0].id
    assert len(commits) == 2
