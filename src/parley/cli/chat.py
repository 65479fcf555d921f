"""``parley ask``, ``parley chat`` and ``parley eval``: questions over a collection."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.markup import escape
from rich.table import Table

from parley.cli.common import EXIT_CONFIG, err, fail, load_settings, open_container, out, run
from parley.container import Container
from parley.domain.auth import SYSTEM
from parley.errors import NotFound, ParleyError
from parley.services.beir import CorpusDoc, corpus_upload_text, read_beir, read_corpus
from parley.services.chat import TurnResult
from parley.services.collections import CollectionView
from parley.services.evaluation import (
    BeirReport,
    EvalCase,
    EvalReport,
    evaluate_beir,
    evaluate_retrieval,
)
from parley.services.ingest.store import ItemOutcome
from parley.services.ingestion import UploadedFile
from parley.settings import Settings

console = out

CollectionOpt = Annotated[str, typer.Option("--collection", "-c", help="Collection name or id.")]


async def resolve_collection(container: Container, ref: str) -> CollectionView:
    """The collection named (or with the id) ``ref``; exits listing the existing ones if none.

    A typo is the usual cause, so the answer names what does exist and how to create more.
    """
    try:
        return await container.collections.resolve(ref, actor=SYSTEM)
    except NotFound:
        pass
    existing = (await container.collections.page(actor=SYSTEM, limit=20, cursor=None)).items
    names = ", ".join(v.row.name for v in existing)
    fail(
        f"no collection named {ref!r}"
        + (f"; existing: {names}" if names else "; there are no collections yet"),
        hint=f"create it by ingesting documents: parley ingest PATH --collection {ref}",
    )


def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    collection: CollectionOpt,
    top_k: Annotated[int | None, typer.Option(help="Sources to retrieve.")] = None,
) -> None:
    """Ask one question; prints the answer with [n] citations and the numbered sources."""
    settings = load_settings()

    async def go() -> TurnResult:
        async with open_container(settings, read_only=True) as c:
            view = await resolve_collection(c, collection)
            session = await c.sessions.create(
                actor=SYSTEM, collection_ids=[view.row.id], title=question[:200]
            )
            turn = await c.chat.prepare(
                actor=SYSTEM, session_id=session.row.id, content=question, top_k=top_k
            )
            return await c.chat.complete(turn)

    result = run(go())
    console.print(result.content, markup=False)
    print_sources([c.to_dict() for c in result.citations])


def chat(
    collection: CollectionOpt,
    session: Annotated[str | None, typer.Option(help="Resume this session id.")] = None,
) -> None:
    """Interactive chat that keeps a session (history survives restarts)."""
    settings = load_settings()

    async def go() -> None:
        async with open_container(settings, read_only=True) as c:
            if session:
                session_id = (await c.sessions.get(session, actor=SYSTEM)).row.id
            else:
                view = await resolve_collection(c, collection)
                session_id = (
                    await c.sessions.create(actor=SYSTEM, collection_ids=[view.row.id])
                ).row.id
            console.print(f"[dim]session {session_id} — empty line or Ctrl-D to quit[/dim]")
            while True:
                try:
                    line = await asyncio.to_thread(console.input, "[bold green]you>[/bold green] ")
                except (EOFError, KeyboardInterrupt):
                    break
                if not line.strip():
                    break
                try:
                    turn = await c.chat.prepare(actor=SYSTEM, session_id=session_id, content=line)
                    console.print("[bold blue]parley>[/bold blue] ", end="")
                    async for event, data in c.chat.stream(turn):
                        if event == "token":
                            console.print(data["text"], end="", markup=False)
                        elif event == "done":
                            console.print()
                            print_sources(data["sources"])
                except ParleyError as exc:
                    err.print(f"[red]error[/red]: {escape(exc.detail)} ({exc.code})")

    run(go())


def eval_(
    collection: CollectionOpt,
    questions: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            help="JSON list of {question, expected_file, expected_phrase} "
            "[default: examples/questions.json].",
        ),
    ] = None,
    beir: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            file_okay=False,
            help="BEIR folder: queries.jsonl + qrels/test.tsv (or qrels.tsv), corpus-id = "
            "the document's source path.",
        ),
    ] = None,
    top_k: Annotated[
        int | None, typer.Option(min=1, help="Rank cut-off [default: 5, or 10 with --beir].")
    ] = None,
    depth: Annotated[int, typer.Option(min=1, help="Chunks searched per query (--beir).")] = 50,
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the numbers as JSON here.")
    ] = None,
    ingest: Annotated[
        bool, typer.Option("--ingest", help="First ingest the folder's corpus.jsonl (--beir).")
    ] = False,
) -> None:
    """Measure retrieval: hit@k and MRR on a question set, or nDCG/recall/MRR on a BEIR set."""
    if questions is not None and beir is not None:
        fail("--questions and --beir are mutually exclusive: give one", code=EXIT_CONFIG)
    if beir is None and (ingest or depth != 50):
        fail("--ingest and --depth apply to --beir evaluations only", code=EXIT_CONFIG)
    settings = load_settings()
    if beir is not None:
        eval_beir(
            settings, collection, beir, k=top_k or 10, depth=depth, ingest=ingest, json_out=json_out
        )
        return
    questions = questions or Path("examples/questions.json")
    if not questions.is_file():
        fail(f"no question set at {questions}", code=EXIT_CONFIG, hint="pass --questions PATH")
    cases = [EvalCase.from_dict(q) for q in json.loads(questions.read_text())]

    async def go() -> EvalReport:
        async with open_container(settings, read_only=True) as c:
            view = await resolve_collection(c, collection)
            return await evaluate_retrieval(
                c.retrieval, collection_ids=[view.row.id], cases=cases, k=top_k or 5
            )

    report = run(go())
    table = Table("rank", "question", "expected source")
    for case, rank in zip(report.cases, report.ranks, strict=True):
        table.add_row(
            str(rank) if rank else "[red]miss[/red]", escape(case.question), escape(case.source)
        )
    console.print(table)
    console.print(f"hit@{report.k} = {report.hit_rate:.3f}   MRR = {report.mrr:.3f}")
    if json_out is not None:
        numbers = {"k": report.k, "hit_rate": report.hit_rate, "mrr": report.mrr}
        json_out.write_text(json.dumps(numbers, indent=2) + "\n")


def eval_beir(
    settings: Settings,
    collection: str,
    folder: Path,
    *,
    k: int,
    depth: int,
    ingest: bool,
    json_out: Path | None,
) -> None:
    """``parley eval --beir``: optionally ingest the corpus, then score and print the set."""
    try:
        dataset = read_beir(folder)
    except ParleyError as exc:
        fail(exc.detail, code=EXIT_CONFIG)
    if ingest and dataset.corpus_path is None:
        fail(f"--ingest needs {folder / 'corpus.jsonl'}", code=EXIT_CONFIG)

    async def go() -> BeirReport:
        async with open_container(settings, read_only=not ingest) as c:
            if ingest and dataset.corpus_path is not None:
                view = await c.collections.get_or_create(actor=SYSTEM, name=collection)
                await _ingest_corpus(c, view.row.id, read_corpus(dataset.corpus_path))
            else:
                view = await resolve_collection(c, collection)
            return await evaluate_beir(
                c.retrieval, collection_ids=[view.row.id], dataset=dataset, k=k, depth=depth
            )

    report = run(go())
    print_beir_report(report)
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
        console.print(f"wrote {escape(str(json_out))}")


async def _ingest_corpus(c: Container, collection_id: str, docs: list[CorpusDoc]) -> None:
    """Each corpus document becomes one upload named by its ``_id`` (its source for qrels)."""
    counts: dict[str, int] = {}

    def on_item(outcome: ItemOutcome) -> None:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1

    size = c.settings.limits.max_files_per_request
    for start in range(0, len(docs), size):
        uploads = [
            UploadedFile(d.id, corpus_upload_text(d).encode(), "text/plain")
            for d in docs[start : start + size]
        ]
        job = await c.ingestion.submit(actor=SYSTEM, collection_id=collection_id, files=uploads)
        await c.runner.run_once(job_id=job.id, progress=on_item)
    console.print(
        f"corpus: {counts.get('succeeded', 0)} ingested, {counts.get('skipped', 0)} unchanged, "
        f"{counts.get('failed', 0)} failed"
    )


def _metric(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_beir_report(report: BeirReport) -> None:
    """The per-group table, the overall line and what the numbers do not cover."""
    k, depth = report.k, report.depth
    # Compact (no borders, one latency column) so ten numbers fit an 80-column terminal.
    table = Table(
        box=box.SIMPLE_HEAD, title="document-level retrieval", pad_edge=False, collapse_padding=True
    )
    table.add_column("group", no_wrap=True)
    for head in ["n", "judged", f"nDCG@{k}", f"R@{k}", f"R@{depth}", f"MRR@{k}", f"span@{k}"]:
        table.add_column(head, justify="right")
    table.add_column("p50/p95 ms", justify="right", no_wrap=True)
    for row in [*report.groups, report.overall]:
        metrics = [row.ndcg, row.recall_k, row.recall_depth, row.mrr, row.span_rate]
        table.add_row(
            escape(row.name),
            *[str(row.queries), str(row.judged), *map(_metric, metrics)],
            f"{row.p50_ms:.1f}/{row.p95_ms:.1f}",
            end_section=row is report.groups[-1],
        )
    console.print(table)
    o = report.overall
    console.print(
        f"overall: nDCG@{k} = {_metric(o.ndcg)}   recall@{k} = {_metric(o.recall_k)}   "
        f"recall@{depth} = {_metric(o.recall_depth)}   MRR@{k} = {_metric(o.mrr)}"
    )
    console.print(f"groups: {escape(', '.join(g.name for g in report.groups))}")
    console.print(
        f"unanswerable: {report.unanswerable} queries (no retrieval metrics); "
        "abstention: not measured by retrieval-only eval"
    )
    console.print(
        "follow-up: turns after the first are searched as sent, without conversation history"
    )
    if report.unjudged:
        console.print(f"[yellow]{report.unjudged} queries have no relevant qrels: left out[/]")


def print_sources(sources: list[dict[str, Any]]) -> None:
    """The numbered sources under an answer."""
    if not sources:
        return
    console.print("\n[bold]Sources[/bold]")
    for s in sources:
        where = []
        if s.get("page"):
            where.append(f"p. {s['page']}")
        if s.get("section"):
            where.append(str(s["section"]))
        suffix = f" ({', '.join(where)})" if where else ""
        console.print(f"  [{s['index']}] {s['title']} — {s['source']}{suffix}", markup=False)
