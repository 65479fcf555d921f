"""Ingestion throughput (chunks/s, files/s) with the fake embedder and the local ONNX model.

In-process through the container, on the embedded SQLite default: ``examples/docs`` is
replicated ``--copies`` times under distinct names (text formats also get a per-copy line,
so their content hashes differ too), submitted as jobs of at most 20 files and run to the
end with ``runner.run_once``. Each provider runs in its own subprocess so its RSS is its
own; model loading is timed separately and excluded from the throughput.

No HTTP is involved, so neither authentication nor rate limits are: jobs are submitted as the
system principal (what ``parley ingest`` does), which costs nothing extra per file; the
upload endpoint's own overhead is in ``bench/turn_overhead.py``'s ingestion step.

    python bench/ingest_throughput.py                       # fake + local, 20 copies (~1 min)
    python bench/ingest_throughput.py --providers fake --copies 100
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import calibration_ms

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "examples" / "docs"
BATCH = 20  # the default limits.max_files_per_request


def rss_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MiB."""
    fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _vary(name: str, data: bytes, copy: int) -> bytes:
    """A per-copy change for formats where appending text keeps the file valid."""
    line = f"Copy {copy} of this document, kept for the ingestion benchmark."
    suffix = Path(name).suffix.lower()
    if suffix in (".txt", ".md"):
        return data + f"\n\n{line}\n".encode()
    if suffix in (".html", ".htm") and b"</body>" in data:
        return data.replace(b"</body>", f"<p>{line}</p></body>".encode(), 1)
    return data  # pdf, docx, csv, json: the distinct name is enough to ingest them again


def corpus(copies: int) -> list[tuple[str, bytes]]:
    """``copies`` renamed (and, for text formats, altered) copies of the example docs."""
    originals = [(p.name, p.read_bytes()) for p in sorted(DOCS.iterdir()) if p.is_file()]
    out = []
    for k in range(copies):
        for name, data in originals:
            stem, dot, ext = name.rpartition(".")
            out.append((f"{stem}-{k:04d}{dot}{ext}", _vary(name, data, k)))
    return out


async def measure(provider: str, copies: int, data_dir: Path) -> dict[str, Any]:
    """Ingest the corpus with one embedder; returns the figures."""
    from parley.container import Container
    from parley.domain.auth import SYSTEM
    from parley.logging import configure_logging
    from parley.services.ingestion import UploadedFile
    from parley.settings import Settings

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        embeddings={"provider": provider, "dimension": 384},
        llm={"provider": "fake"},
    )
    configure_logging(level="warning", json=True)
    c = Container.build(settings)
    try:
        await c.prepare_database()
        t = time.perf_counter()
        warmup = getattr(c.embedder, "warmup", None)
        if warmup is not None:
            await warmup()
        else:
            await c.embedder.embed(["warm up"], kind="document")
        load_s = time.perf_counter() - t
        cid = (await c.collections.create(actor=SYSTEM, name="bench")).row.id
        files = corpus(copies)
        chunks = succeeded = 0
        cpu, started = time.process_time(), time.perf_counter()
        for i in range(0, len(files), BATCH):
            batch = [UploadedFile(n, d) for n, d in files[i : i + BATCH]]
            job = await c.ingestion.submit(actor=SYSTEM, collection_id=cid, files=batch)
            status = await c.runner.run_once(job_id=job.id)
            if status != "succeeded":
                raise RuntimeError(f"job {job.id} ended {status}")
            _, items = await c.collections.job(job.id, actor=SYSTEM)
            chunks += sum(item.chunk_count or 0 for item in items)
            succeeded += sum(1 for item in items if item.status == "succeeded")
        seconds = time.perf_counter() - started
        cpu_s = time.process_time() - cpu
        rss, peak = rss_mb()
        return {
            "provider": provider,
            "model": c.embedder.model_id,
            "files": succeeded,
            "bytes": sum(len(d) for _, d in files),
            "chunks": chunks,
            "seconds": seconds,
            "cpu_s": cpu_s,
            "load_s": load_s,
            "rss_mb": rss,
            "peak_mb": peak,
        }
    finally:
        await c.aclose()


def child(provider: str, copies: int) -> None:
    """Run one provider in this process and print its figures as one JSON line."""
    tmp = Path(tempfile.mkdtemp(prefix="parley-ingest-"))
    try:
        result = asyncio.run(measure(provider, copies, tmp / "data"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("RESULT " + json.dumps(result))


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--providers", default="fake,local", help="comma-separated embedders")
    p.add_argument("--copies", type=int, default=20, help="copies of examples/docs")
    p.add_argument("--child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.copies)
        return
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    results = []
    calib_start = calibration_ms()
    for provider in [x.strip() for x in args.providers.split(",") if x.strip()]:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", provider, "--copies", str(args.copies)],
            capture_output=True,
            text=True,
            env=env,
            timeout=1800,
            check=False,
        )
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            print(f"{provider}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        r = json.loads(line[len("RESULT ") :])
        results.append(r)
        print(f"  {provider}: {r['chunks']} chunks in {r['seconds']:.1f}s")
    print(
        f"\ncorpus: examples/docs x {args.copies} · {os.cpu_count()} CPUs · CPU calibration "
        f"{calib_start:.1f} ms at start, {calibration_ms():.1f} ms at end (lower = faster)"
    )
    print(
        "| embedder | files | chunks | MiB | seconds | chunks/s | files/s | CPU s | "
        "model load s | RSS (peak) MiB |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in results:
        print(
            f"| {r['provider']} ({r['model']}) | {r['files']} | {r['chunks']} | "
            f"{r['bytes'] / 2**20:.1f} | {r['seconds']:.1f} | {r['chunks'] / r['seconds']:.0f} | "
            f"{r['files'] / r['seconds']:.1f} | {r['cpu_s']:.1f} | {r['load_s']:.2f} | "
            f"{r['rss_mb']:.0f} ({r['peak_mb']:.0f}) |"
        )


if __name__ == "__main__":
    main()
