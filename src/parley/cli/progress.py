"""``parley ingest``: submit files as durable jobs and run them here with a progress bar.

The report tells the truth: files of a kind Parley cannot read are *skipped* (listed, not
failures), a supported file that could not be stored is *failed*, and Ctrl-C finishes the
file in progress, cancels the rest of the job and says how to continue.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
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
from parley.errors import Conflict, NotFound, ParleyError
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


def upload_name(file: Path, root: Path) -> str:
    """The name ``file`` is stored under: its path below the folder ``root``, with ``/``.

    Documents are keyed by this name, so ``a/README.md`` and ``b/README.md`` of one folder stay
    two documents, and ingesting the same folder again finds each of them. A file given as
    ``root`` itself is named by its file name.
    """
    file, root = file.absolute(), root.absolute()
    if file == root or not file.is_relative_to(root):
        return file.name
    return file.relative_to(root).as_posix()


def refusal(file: Path, *, max_bytes: int) -> str | None:
    """Why ``file`` cannot be ingested (too large, not a readable type), or None."""
    size = file.stat().st_size
    if size > max_bytes:
        return f"larger than {max_bytes} bytes (PARLEY_LIMITS__MAX_UPLOAD_BYTES)"
    try:
        detect_mime(file.read_bytes(), filename=file.name)
    except ParleyError as exc:
        return exc.detail
    return None


@dataclass(slots=True)
class IngestReport:
    """What one ``parley ingest`` did."""

    planned: int = 0
    counts: dict[str, int] = field(
        default_factory=lambda: {"succeeded": 0, "skipped": 0, "failed": 0}
    )
    failures: list[ItemOutcome] = field(default_factory=list)
    skipped_files: list[tuple[Path, str]] = field(default_factory=list)
    interrupted: bool = False
    aborted: bool = False
    elapsed_s: float = 0.0

    @property
    def done(self) -> int:
        """Files that reached an outcome (stored, unchanged or failed)."""
        return sum(self.counts.values())


def _common_folder(files: list[Path]) -> Path:
    """The deepest folder holding every file (the current folder when there is none)."""
    if not files:
        return Path()
    return Path(os.path.commonpath([f.absolute().parent for f in files]))


def _batches(files: list[Path], size: int) -> Iterator[list[Path]]:
    for start in range(0, len(files), size):
        yield files[start : start + size]


class _Interrupts:
    """Ctrl-C once: finish the file in progress and cancel the rest. Twice: stop at once."""

    def __init__(self, container: Container, console: Console) -> None:
        self._container = container
        self._console = console
        self._main = asyncio.current_task()
        self.job_id: str | None = None
        self.requested = False
        self._pending: set[asyncio.Task[None]] = set()

    def __enter__(self) -> _Interrupts:
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)

    def _on_sigint(self) -> None:
        if self.requested:
            if self._main is not None:
                self._main.cancel()
            return
        self.requested = True
        self._console.print(
            "[yellow]Stopping after the file in progress[/yellow] "
            "(Ctrl-C again to stop at once; that file is then not stored)."
        )
        if self.job_id is not None:
            task = asyncio.create_task(self.cancel(self.job_id))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)

    async def cancel(self, job_id: str) -> None:
        """Cancel the job: its runner stops before the next file (the current one completes)."""
        # The runner checks the flag before each file, so the file it is on completes.
        with contextlib.suppress(NotFound, Conflict):
            await self._container.collections.cancel_job(job_id, actor=SYSTEM)


async def ingest_with_progress(
    container: Container,
    collection_id: str,
    files: list[Path],
    *,
    console: Console,
    skipped: list[tuple[Path, str]] | None = None,
    root: Path | None = None,
) -> IngestReport:
    """Ingest ``files`` into a collection in jobs of at most the per-request file count.

    Each file is sent under its path relative to ``root`` (the ingested folder; by default
    the deepest folder holding them all), see ``upload_name``.
    """
    report = IngestReport(planned=len(files), skipped_files=list(skipped or []))
    base = root if root is not None else _common_folder(files)
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
    with (
        Progress(*columns, console=console, transient=False) as progress,
        _Interrupts(container, console) as interrupts,
    ):
        task = progress.add_task("ingesting", total=len(files), chunks=0)

        def on_item(outcome: ItemOutcome) -> None:
            report.counts[outcome.status] = report.counts.get(outcome.status, 0) + 1
            if outcome.status == "failed":
                report.failures.append(outcome)
            chunks = int(progress.tasks[0].fields["chunks"]) + outcome.chunks
            progress.update(task, advance=1, chunks=chunks)

        try:
            for batch in _batches(files, container.settings.limits.max_files_per_request):
                if interrupts.requested:
                    break
                # Read a batch at a time: a large folder is never held in memory at once.
                uploads = [UploadedFile(upload_name(f, base), f.read_bytes()) for f in batch]
                job = await container.ingestion.submit(
                    actor=SYSTEM, collection_id=collection_id, files=uploads
                )
                interrupts.job_id = job.id
                if interrupts.requested:  # Ctrl-C while submitting: nothing of it runs
                    await interrupts.cancel(job.id)
                    break
                await container.runner.run_once(job_id=job.id, progress=on_item)
        except asyncio.CancelledError:
            report.aborted = True
        report.interrupted = interrupts.requested
    report.elapsed_s = time.perf_counter() - started
    return report


def print_report(report: IngestReport, *, console: Console) -> None:
    """Skipped and failed files, then one summary line (and how to continue, if stopped)."""
    for path, reason in report.skipped_files:
        console.print(f"[yellow]skipped[/yellow] {escape(str(path))}: {escape(reason)}")
    for outcome in report.failures:
        console.print(
            f"[red]failed[/red] {escape(outcome.filename)}: {escape(outcome.error or '')}"
        )
    summary = (
        f"{report.counts['succeeded']} ingested, {report.counts['skipped']} unchanged, "
        f"{report.counts['failed']} failed"
    )
    if report.skipped_files:
        summary += f", {len(report.skipped_files)} skipped"
    console.print(f"{summary} in {report.elapsed_s:.1f}s")
    if report.interrupted or report.aborted:
        left = report.planned - report.done
        how = "stopped at once" if report.aborted else "interrupted"
        console.print(
            f"[yellow]{how}[/yellow]: {left} of {report.planned} files not ingested. "
            "Run the same command again to continue: files already stored are skipped."
        )
