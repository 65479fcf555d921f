"""The ``parley`` command: serve, ingest, ask, chat, collections, migrate, eval, users, keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from parley.cli import chat as chat_commands
from parley.cli.accounts import keys_app, users_app
from parley.cli.common import EXIT_CONFIG, STATE, fail, load_settings, open_container, out, run
from parley.cli.progress import IngestReport, collect_files, ingest_with_progress, print_report
from parley.cli.progress import refusal as file_refusal
from parley.cli.serve import serve
from parley.cli.worker import worker
from parley.container import Container
from parley.domain.auth import SYSTEM
from parley.logging import configure_logging
from parley.version import package_version

# Help texts are shown as written: no Rich markup (``[n]`` would vanish) or Markdown.
app = typer.Typer(
    name="parley",
    help="Conversational RAG over your documents.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
console = out

# Some supported files could not be stored; Ctrl-C conventionally exits 128 + SIGINT.
EXIT_SOME_FAILED = 2
EXIT_INTERRUPTED = 130


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"parley {package_version()}")
        raise typer.Exit()


@app.callback()
def main_options(
    show_version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_show_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")
    ] = False,
) -> None:
    """Conversational RAG over your documents."""
    STATE.debug = debug


app.command()(serve)
app.command(name="worker")(worker)
app.command(name="ask")(chat_commands.ask)
app.command(name="chat")(chat_commands.chat)
app.command(name="eval")(chat_commands.eval_)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")


@app.command()
def config() -> None:
    """Print every setting with its default and meaning (the content of .env.example)."""
    from parley.cli.config import env_example

    typer.echo(env_example(), nl=False)


@app.command()
def migrate() -> None:
    """Upgrade the configured database to the latest schema."""
    from parley.db import migrate as migrations

    settings = load_settings()

    async def go() -> tuple[str | None, str | None]:
        configure_logging(level="warning", json=False, cache=False)
        container = Container.build(settings)
        try:
            await migrations.upgrade(container.engine)
            return await migrations.current_revision(container.engine)
        finally:
            await container.aclose()

    current, head = run(go())
    console.print(f"database at revision [bold]{current}[/bold] (head {head})")


@app.command()
def ingest(
    path: Annotated[Path, typer.Argument(exists=True, help="A file or a folder (recursive).")],
    collection: chat_commands.CollectionOpt,
) -> None:
    """Ingest files into a collection (created if missing), with a progress bar.

    Each document is named by its path below the folder (sub/README.md), so same-named files
    in different subfolders stay apart; ingesting the same folder again skips unchanged
    files. In a folder, files Parley cannot read (images, archives, too large) are skipped
    and listed; naming such a file directly is an error. Ctrl-C finishes the file in progress.
    """
    settings = load_settings()
    max_bytes = settings.limits.max_upload_bytes
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for file in collect_files(path):
        reason = file_refusal(file, max_bytes=max_bytes)
        if reason is None:
            files.append(file)
        elif path.is_file():
            fail(f"cannot ingest {file}: {reason}", code=EXIT_CONFIG)
        else:
            skipped.append((file, reason))
    if not files:
        for file, reason in skipped:
            console.print(f"[yellow]skipped[/yellow] {escape(str(file))}: {escape(reason)}")
        fail(f"no file Parley can read in {path}", code=EXIT_CONFIG)

    async def go() -> IngestReport:
        async with open_container(settings) as c:
            view = await c.collections.get_or_create(actor=SYSTEM, name=collection)
            # Files are named by their path below the ingested folder (a lone file: its name).
            return await ingest_with_progress(
                c, view.row.id, files, console=console, skipped=skipped, root=path
            )

    report = run(go())
    print_report(report, console=console)
    if report.interrupted or report.aborted:
        raise typer.Exit(code=EXIT_INTERRUPTED)
    if report.failures:
        raise typer.Exit(code=EXIT_SOME_FAILED)


@app.command()
def collections() -> None:
    """List collections with their document and chunk counts."""
    settings = load_settings()

    async def go() -> list[Any]:
        async with open_container(settings, read_only=True) as c:
            return (await c.collections.page(actor=SYSTEM, limit=200, cursor=None)).items

    items = run(go())
    if not items:
        console.print("no collections yet: parley ingest PATH --collection NAME")
        return
    table = Table("id", "name", "documents", "chunks", "embedding model")
    for view in items:
        table.add_row(
            view.row.id,
            escape(view.row.name),
            str(view.documents),
            str(view.chunks),
            view.row.embedding_model,
        )
    console.print(table)


def main() -> None:
    """Console entry point."""
    app(prog_name="parley")
