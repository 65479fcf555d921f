"""``parley ingest``: submit files as durable jobs and run them here with a progress bar."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from parley.container import Container
from parley.domain.auth import SYSTEM
from parley.errors import ParleyError
from parley.services.ingestion import ItemOutcome, UploadedFile
from parley.services.parsing import detect_mime

_SKIP_DIRS = {".git", "__pycache__", "node_modules", ".venv"}


class ChunkRateColumn(ProgressColumn):
    """Chunks stored per second since the start."""

    def render(self, task: Task) -> Text:
        """Render ``N chunks, R/s``."""
        chunks = int(task.fields.get("chunks", 0))
        elapsed = task.elapsed or 0.0
        rate = chunks / elapsed if elapsed > 0 else 0.0
        return Text(f"{chunks} chunks, {rate:.1f}/s", style="cyan")


def collect_files(path: Path) -> list[Path]:
    """A file, or every non-hidden file below a folder, in a stable order."""
    if path.is_file():
        return [path]
    files = []
    for candidate in sorted(path.rglob("*")):
        parts = candidate.relative_to(path).parts
        if any(p.startswith(".") or p in _SKIP_DIRS for p in parts):
            continue
        if candidate.is_file():
            files.append(candidate)
    return files


async def ingest_with_progress(
    container: Container, collection_id: str, path: Path, *, console: Console
) -> int:
    """Ingest ``path`` into a collection; return how many files failed."""
    limits = container.settings.limits
    accepted: list[UploadedFile] = []
    rejected = 0
    for file in collect_files(path):
        data = file.read_bytes()
        try:
            if len(data) > limits.max_upload_bytes:
                raise ParleyError(f"larger than {limits.max_upload_bytes} bytes")
            detect_mime(data, filename=file.name)
        except ParleyError as exc:
            console.print(f"[yellow]skipped[/yellow] {file}: {exc.detail}")
            rejected += 1
            continue
        accepted.append(UploadedFile(file.name, data))
    if not accepted:
        console.print("[red]no supported files found[/red]")
        return rejected or 1

    failures: list[ItemOutcome] = []
    counts = {"succeeded": 0, "skipped": 0, "failed": 0}
    started = time.perf_counter()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        ChunkRateColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("ingesting", total=len(accepted), chunks=0)

        def on_item(outcome: ItemOutcome) -> None:
            counts[outcome.status] = counts.get(outcome.status, 0) + 1
            if outcome.status == "failed":
                failures.append(outcome)
            chunks = int(progress.tasks[0].fields["chunks"]) + outcome.chunks
            progress.update(task, advance=1, chunks=chunks)

        step = limits.max_files_per_request
        for start in range(0, len(accepted), step):
            job = await container.ingestion.submit(
                actor=SYSTEM, collection_id=collection_id, files=accepted[start : start + step]
            )
            await container.runner.run_once(job_id=job.id, progress=on_item)
    elapsed = time.perf_counter() - started
    for outcome in failures:
        console.print(f"[red]failed[/red] {outcome.filename}: {outcome.error}")
    console.print(
        f"{counts['succeeded']} ingested, {counts['skipped']} unchanged, "
        f"{counts['failed'] + rejected} failed in {elapsed:.1f}s"
    )
    return len(failures) + rejected
