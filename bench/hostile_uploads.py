"""Hostile uploads against a real ``parley serve``: outcome, time and memory of each.

Starts ``parley serve`` (subprocess, auth on, a temporary data dir, default settings except
the FAKE embedder: embedding is not what is measured, and the fake keeps the run short; the
tokenizer is the real local one), reads the bootstrap admin key from its stderr, and uploads
each hostile shape over HTTP with that key, one job per file, polling the job to its end.
While a job runs, the server's VmRSS and that of its parser processes (its children) are
sampled every 50 ms from /proc. Linux only.

Target: the API process never exceeds its idle RSS + 300 MiB; a parser process never exceeds
``PARLEY_INGEST_LIMITS__PARSE_MEMORY_MB`` (1024 by default).

    python bench/hostile_uploads.py                  # every case (~75 s on 2 cores)
    python bench/hostile_uploads.py --cases csv-wide,docx-bomb
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from benchlib import calibration_ms, loadavg

ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024
_W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"


# --- the shapes -------------------------------------------------------------------------


def csv_wide() -> bytes:
    """Header + ``,"a`` x 7 M: one row of 3.67 M fields (the reported 17 GB case)."""
    return b"a,b\n" + b',"a' * 7_000_000


def csv_rows() -> bytes:
    """24 MB of short rows: 3 M rows."""
    return b"id,name\n" + b"1,bike\n" * 3_400_000


def docx_bomb() -> bytes:
    """A ~0.6 MB .docx whose document.xml inflates to ~175 MB (3.8 M paragraphs)."""
    return _docx(3_800, b"<w:p><w:r><w:t>Hello there.</w:t></w:r></w:p>")


def docx_paragraphs() -> bytes:
    """Under the XML cap (~89 MB) but 2.4 M paragraphs: stopped by the paragraph budget."""
    return _docx(2_400, b"<w:p><w:r><w:t>Hi.</w:t></w:r></w:p>")


def _docx(thousands: int, paragraph: bytes) -> bytes:
    """A .docx made by python-docx, its document.xml replaced by ``thousands`` x 1000 copies
    of ``paragraph``, streamed into the zip."""
    import docx

    base = io.BytesIO()
    docx.Document().save(base)
    source = zipfile.ZipFile(io.BytesIO(base.getvalue()))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for info in source.infolist():
            if info.filename != "word/document.xml":
                archive.writestr(info.filename, source.read(info))
                continue
            with archive.open("word/document.xml", "w", force_zip64=True) as xml:
                xml.write(f'<w:document xmlns:w="{_W}"><w:body>'.encode())
                block = paragraph * 1_000
                for _ in range(thousands):
                    xml.write(block)
                xml.write(b"</w:body></w:document>")
    return out.getvalue()


def html_deep() -> bytes:
    """24 MB of nested, never-closed ``<div><b>``."""
    return b"<html><body>" + b"<div><b>" * 3_000_000


def html_wide() -> bytes:
    """24 MB of sibling paragraphs: 3 M elements."""
    return b"<html><body>" + b"<p>x</p>" * 3_000_000


def text_oneline() -> bytes:
    """24 MB on one line, no full stops (the reported 62 s / 5.9 GB chunker case)."""
    return b"lorem ipsum dolor sit amet " * 900_000


def text_oneline_fits() -> bytes:
    """9.5 MB on one line, no full stops: under the text budget, so it is chunked."""
    return b"lorem ipsum dolor sit amet " * 350_000


def json_values() -> bytes:
    """24 MB of empty arrays: 8 M values."""
    return b"[" + b"[]," * 8_000_000 + b"[]]"


def json_deep() -> bytes:
    """500,000 levels of nesting (fewer values than the value budget)."""
    return b"[" * 500_000 + b"]" * 500_000


def pdf_pages() -> bytes:
    """5,000 pages of one line each."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("helvetica", size=12)
    for n in range(5_000):
        pdf.add_page()
        pdf.cell(text=f"Page {n + 1}.")
    return bytes(pdf.output())


def markdown_big() -> bytes:
    """9 MB of ordinary markdown: within every budget, heavy for markdown-it."""
    para = b"Some *markdown* text with `code` and [links](http://x). " * 20
    return (b"# Title\n\n" + para + b"\n\n") * 8_000


CASES: dict[str, tuple[str, Callable[[], bytes]]] = {
    "csv-wide": ("wide.csv", csv_wide),
    "csv-rows": ("rows.csv", csv_rows),
    "docx-bomb": ("bomb.docx", docx_bomb),
    "docx-paragraphs": ("paragraphs.docx", docx_paragraphs),
    "html-deep": ("deep.html", html_deep),
    "html-wide": ("wide.html", html_wide),
    "text-oneline-24mb": ("oneline.txt", text_oneline),
    "text-oneline-9mb": ("oneline-fits.txt", text_oneline_fits),
    "json-values": ("values.json", json_values),
    "json-deep": ("deep.json", json_deep),
    "pdf-pages": ("pages.pdf", pdf_pages),
    "markdown-9mb": ("big.md", markdown_big),
}


# --- the server and its memory ----------------------------------------------------------


def rss_mb(pid: int) -> float:
    """VmRSS of ``pid`` in MiB (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
    return int(match.group(1)) / 1024 if match else 0.0


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (spawned from any of its threads)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


class Sampler(threading.Thread):
    """Peak RSS of the server and of its largest child, every ``interval_s``."""

    def __init__(self, pid: int, interval_s: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval_s = pid, interval_s
        self.api_peak = self.child_peak = 0.0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.api_peak = max(self.api_peak, rss_mb(self.pid))
            for child in children(self.pid):
                self.child_peak = max(self.child_peak, rss_mb(child))
            self._halt.wait(self.interval_s)

    def stop(self) -> None:
        self._halt.set()
        self.join()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(data_dir: Path, port: int) -> tuple[subprocess.Popen[str], str, list[str]]:
    """``parley serve`` with a fresh data dir; returns it, its admin key and its stderr lines."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    env.update(
        PARLEY_DATA_DIR=str(data_dir),
        PARLEY_EMBEDDINGS__PROVIDER="fake",  # embedding is not what is measured here
        PARLEY_EMBEDDINGS__DIMENSION="384",
        PARLEY_SERVER__LOG_JSON="true",
        PARLEY_SERVER__LOG_LEVEL="warning",
        COLUMNS="200",
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "parley", "serve", "--port", str(port)],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=data_dir.parent,
    )
    lines: list[str] = []
    key: list[str] = []

    def read() -> None:
        assert server.stderr is not None
        for line in server.stderr:
            lines.append(line)
            if not key and (found := re.search(r"\bpk_[A-Za-z0-9_\-]+", line)):
                key.append(found.group(0))

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("parley serve exited:\n" + "".join(lines[-30:]))
        try:
            if key and httpx.get(f"http://127.0.0.1:{port}/livez", timeout=1).is_success:
                return server, key[0], lines
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.kill()
    raise RuntimeError("parley serve did not start:\n" + "".join(lines[-30:]))


def run_case(
    client: httpx.Client, collection: str, pid: int, name: str, data: bytes
) -> dict[str, Any]:
    """Upload one file, wait for its job; outcome, seconds and peak memory."""
    sampler = Sampler(pid)
    sampler.start()
    started = time.monotonic()
    try:
        files = [("files", (name, data))]
        upload = client.post(f"/v1/collections/{collection}/documents", files=files)
        if upload.status_code != 202:
            body = upload.json()
            return {"outcome": f"HTTP {upload.status_code} {body.get('code')}", "seconds": 0.0}
        job_id = upload.json()["job_id"]
        while True:
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.2)
        seconds = time.monotonic() - started
    finally:
        sampler.stop()
    time.sleep(0.5)
    settled = rss_mb(pid)
    item = job["items"][0]
    if item["status"] == "failed":
        outcome = "failed: " + (item["error"] or "").split(":", 1)[0]
    else:
        outcome = f"{item['status']} ({item['chunks']} chunks)"
    return {
        "outcome": outcome,
        "seconds": seconds,
        "api_peak": sampler.api_peak,
        "child_peak": sampler.child_peak,
        "settled": settled,
        "error": item["error"],
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    args = p.parse_args()
    chosen = [c.strip() for c in args.cases.split(",") if c.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="parley-hostile-"))
    calib = calibration_ms()
    port = free_port()
    server, key, _ = start_server(tmp / "data", port)
    rows: list[dict[str, Any]] = []
    try:
        headers = {"Authorization": f"Bearer {key}"}
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, headers=headers, timeout=300) as client:
            collection = client.post("/v1/collections", json={"name": "hostile"}).json()["id"]
            # Warm up: the first job loads the tokenizer and starts a parser process.
            warm = (ROOT / "examples" / "docs" / "warranty.md").read_bytes()
            run_case(client, collection, server.pid, "warm.md", warm)
            time.sleep(1.0)
            idle = rss_mb(server.pid)
            print(f"idle API RSS after a warm-up job: {idle:.0f} MiB", flush=True)
            for case in chosen:
                filename, make = CASES[case]
                data = make()
                result = run_case(client, collection, server.pid, filename, data)
                result.update(case=case, size=len(data), idle=idle)
                rows.append(result)
                print(f"  {case}: {json.dumps(result)}", flush=True)
                del data
            alive = server.poll() is None and client.get("/livez").is_success
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"\n{os.cpu_count()} CPUs · load {loadavg()} · CPU calibration {calib:.1f} ms "
        f"(lower = faster) · fake embedder, local tokenizer · server alive at the end: {alive}"
    )
    print(f"idle API RSS {idle:.0f} MiB; target: API peak <= idle + 300 MiB")
    print(
        "(what stays after a job is mostly SQLite's page cache, PRAGMA cache_size=-32000 per "
        "pooled connection, holding pages of the stored uploads: bounded, not a leak)\n"
    )
    print(
        "| case | size | outcome | seconds | API peak RSS MiB (over idle) | API RSS after "
        "| parser peak RSS MiB |"
    )
    print("|---|--:|---|--:|--:|--:|--:|")
    for r in rows:
        size = f"{r['size'] / MB:.1f} MB" if r["size"] >= MB / 10 else f"{r['size'] / 1024:.0f} KB"
        print(
            f"| {r['case']} | {size} | {r['outcome']} | {r['seconds']:.1f} | "
            f"{r.get('api_peak', 0):.0f} (+{r.get('api_peak', 0) - r['idle']:.0f}) | "
            f"{r.get('settled', 0):.0f} | {r.get('child_peak', 0):.0f} |"
        )


if __name__ == "__main__":
    main()
