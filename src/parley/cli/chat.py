"""``parley ask``, ``parley chat`` and ``parley eval``: questions over a collection."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from parley.cli.common import err, fail, load_settings, open_container, out, run
from parley.container import Container
from parley.domain.auth import SYSTEM
from parley.errors import NotFound, ParleyError
from parley.services.chat import TurnResult
from parley.services.collections import CollectionView
from parley.services.evaluation import EvalCase, EvalReport, evaluate_retrieval

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
        Path,
        typer.Option(exists=True, help="JSON list of {question, expected_file, expected_phrase}."),
    ] = Path("examples/questions.json"),
    top_k: Annotated[int, typer.Option(help="Rank cut-off.")] = 5,
) -> None:
    """Measure retrieval on a labelled question set: hit rate at k and MRR."""
    settings = load_settings()
    cases = [EvalCase.from_dict(q) for q in json.loads(questions.read_text())]

    async def go() -> EvalReport:
        async with open_container(settings, read_only=True) as c:
            view = await resolve_collection(c, collection)
            return await evaluate_retrieval(
                c.retrieval, collection_ids=[view.row.id], cases=cases, k=top_k
            )

    report = run(go())
    table = Table("rank", "question", "expected source")
    for case, rank in zip(report.cases, report.ranks, strict=True):
        table.add_row(
            str(rank) if rank else "[red]miss[/red]", escape(case.question), escape(case.source)
        )
    console.print(table)
    console.print(f"hit@{report.k} = {report.hit_rate:.3f}   MRR = {report.mrr:.3f}")


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
