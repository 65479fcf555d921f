"""``parley`` commands: serve, ingest, ask, chat, collections, migrate, eval."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from parley.cli.accounts import keys_app, users_app
from parley.cli.progress import ingest_with_progress
from parley.cli.worker import worker
from parley.container import Container
from parley.domain.auth import SYSTEM
from parley.errors import ParleyError
from parley.logging import configure_logging
from parley.services.chat import TurnResult
from parley.services.evaluation import EvalCase, EvalReport, evaluate_retrieval
from parley.settings import Settings

app = typer.Typer(
    name="parley",
    help="Conversational RAG over your documents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
err = Console(stderr=True)
T = TypeVar("T")

CollectionOpt = Annotated[str, typer.Option("--collection", "-c", help="Collection name or id.")]


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except ParleyError as exc:
        err.print(f"[red]error[/red] ({exc.code}): {exc.detail}")
        raise typer.Exit(code=1) from None


@asynccontextmanager
async def _container(*, quiet: bool = True) -> AsyncIterator[Container]:
    settings = Settings()
    configure_logging(
        level="warning" if quiet else settings.server.log_level, json=False, cache=False
    )
    container = Container.build(settings)
    try:
        await container.prepare_database()
        yield container
    finally:
        await container.aclose()


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
) -> None:
    """Run the HTTP API (and, on the embedded default, the ingestion job runner)."""
    import uvicorn

    from parley.api.app import create_app

    settings = Settings()
    if host:
        settings.server.host = host
    if port:
        settings.server.port = port
    configure_logging(level=settings.server.log_level, json=settings.server.log_json)
    try:
        application = create_app(settings)
    except ParleyError as exc:
        err.print(f"[red]error[/red] ({exc.code}): {exc.detail}")
        raise typer.Exit(code=1) from None
    if settings.auth == "on":
        key = _run(_bootstrap(settings))
        if key:
            err.print(
                "\n[bold]No user exists yet.[/bold] A one-time admin API key was created "
                "(shown only now, stored hashed):\n\n"
                f"    [bold green]{key}[/bold green]\n\n"
                "Use it as 'Authorization: Bearer <key>'; create real accounts with "
                "POST /v1/admin/users or 'parley users create --admin', then revoke it.\n",
                soft_wrap=True,
            )
    uvicorn.run(
        application,
        host=settings.server.host,
        port=settings.server.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )


async def _bootstrap(settings: Settings) -> str | None:
    container = Container.build(settings)
    try:
        await container.prepare_database()
        return await container.auth.bootstrap()
    finally:
        await container.aclose()


@app.command()
def config() -> None:
    """Print every setting with its default and meaning (the content of ``.env.example``)."""
    from parley.cli.config import env_example

    typer.echo(env_example(), nl=False)


@app.command()
def migrate() -> None:
    """Upgrade the configured database to the latest schema."""
    from parley.db import migrate as migrations

    async def run() -> tuple[str | None, str | None]:
        settings = Settings()
        configure_logging(level="warning", json=False, cache=False)
        container = Container.build(settings)
        try:
            await migrations.upgrade(container.engine)
            return await migrations.current_revision(container.engine)
        finally:
            await container.aclose()

    current, head = _run(run())
    console.print(f"database at revision [bold]{current}[/bold] (head {head})")


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(exists=True, help="A file or a folder (recursive).")],
    collection: CollectionOpt,
) -> None:
    """Ingest files into a collection (created if missing), with a progress bar."""

    async def run() -> int:
        async with _container() as c:
            view = await c.collections.get_or_create(actor=SYSTEM, name=collection)
            return await ingest_with_progress(c, view.row.id, path, console=console)

    failed = _run(run())
    if failed:
        raise typer.Exit(code=2)


@app.command()
def collections() -> None:
    """List collections."""

    async def run() -> list[Any]:
        async with _container() as c:
            return (await c.collections.page(actor=SYSTEM, limit=200, cursor=None)).items

    table = Table("id", "name", "documents", "chunks", "embedding model")
    for view in _run(run()):
        table.add_row(
            view.row.id,
            view.row.name,
            str(view.documents),
            str(view.chunks),
            view.row.embedding_model,
        )
    console.print(table)


@app.command()
def ask(
    question: Annotated[str, typer.Argument(help="The question.")],
    collection: CollectionOpt,
    top_k: Annotated[int | None, typer.Option(help="Sources to retrieve.")] = None,
) -> None:
    """Ask one question; prints the answer with [n] citations and the numbered sources."""

    async def run() -> TurnResult:
        async with _container() as c:
            view = await c.collections.resolve(collection, actor=SYSTEM)
            session = await c.sessions.create(
                actor=SYSTEM, collection_ids=[view.row.id], title=question[:200]
            )
            turn = await c.chat.prepare(
                actor=SYSTEM, session_id=session.row.id, content=question, top_k=top_k
            )
            return await c.chat.complete(turn)

    _print_answer(_run(run()))


@app.command()
def chat(
    collection: CollectionOpt,
    session: Annotated[str | None, typer.Option(help="Resume this session id.")] = None,
) -> None:
    """Interactive chat that keeps a session (history survives restarts)."""

    async def run() -> None:
        async with _container() as c:
            if session:
                session_id = (await c.sessions.get(session, actor=SYSTEM)).row.id
            else:
                view = await c.collections.resolve(collection, actor=SYSTEM)
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
                            console.print(data["text"], end="", markup=False, highlight=False)
                        elif event == "done":
                            console.print()
                            _print_sources(data["sources"])
                except ParleyError as exc:
                    err.print(f"[red]error[/red] ({exc.code}): {exc.detail}")

    _run(run())


@app.command(name="eval")
def eval_(
    collection: CollectionOpt,
    questions: Annotated[
        Path,
        typer.Option(exists=True, help="JSON list of {question, expected_file, expected_phrase}."),
    ] = Path("examples/questions.json"),
    top_k: Annotated[int, typer.Option(help="Rank cut-off.")] = 5,
) -> None:
    """Measure retrieval on a labelled question set: hit rate at k and MRR."""
    cases = [EvalCase.from_dict(q) for q in json.loads(questions.read_text())]

    async def run() -> EvalReport:
        async with _container() as c:
            view = await c.collections.resolve(collection, actor=SYSTEM)
            return await evaluate_retrieval(
                c.retrieval, collection_ids=[view.row.id], cases=cases, k=top_k
            )

    report = _run(run())
    table = Table("rank", "question", "expected source")
    for case, rank in zip(report.cases, report.ranks, strict=True):
        table.add_row(str(rank) if rank else "[red]miss[/red]", case.question, case.source)
    console.print(table)
    console.print(f"hit@{report.k} = {report.hit_rate:.3f}   MRR = {report.mrr:.3f}")


app.command(name="worker")(worker)


def _print_answer(result: TurnResult) -> None:
    console.print(result.content, markup=False, highlight=False)
    _print_sources([c.to_dict() for c in result.citations])


def _print_sources(sources: list[dict[str, Any]]) -> None:
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


def main() -> None:
    """Console entry point."""
    app(prog_name="parley")


if __name__ == "__main__":
    main()
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
