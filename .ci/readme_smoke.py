"""Prove the README as a new user meets it: set-up command 1, then "Try it", then a wheel.

Run by ``.ci/run`` before the test suite, with the system ``python3`` (stdlib only):

1. clone the committed tree into a scratch folder (untracked files cannot hide a gap);
2. run the README block marked ``<!-- ci: setup -->`` *as written* (a clean venv, no
   extras, ``parley serve``) with an empty data home, and wait for ``/readyz``;
3. read the one-time admin key from what the server printed, run ``parley --version``
   and the block marked ``<!-- ci: try-it -->`` as written with ``PARLEY_KEY`` set, and
   check what a user would look at: the ingest summary, ``[1]`` in the answer, a streamed
   turn ending in ``event: done``;
4. stop the server (SIGINT, as Ctrl-C) and expect a clean exit;
5. build a wheel, install it alone in another clean venv, run ``parley --version`` and
   ``parley --help``.

Any step failing prints what the user would have seen and exits non-zero.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = re.compile(r"pk_[A-Za-z0-9]{8}_[A-Za-z0-9_-]{20,}")
INSTALL_AND_START_S = 900  # a cold pip cache downloads onnxruntime & co.
STEP_S = 300


def readme_block(repo: Path, marker: str) -> str:
    """The fenced block right after ``<!-- ci: marker -->`` in the clone's README.md."""
    text = (repo / "README.md").read_text()
    found = re.search(rf"<!-- ci: {re.escape(marker)} -->\s*```\w*\n(.*?)```", text, re.S)
    if not found:
        sys.exit(f"README.md has no block marked <!-- ci: {marker} -->")
    return found.group(1)


def step(title: str) -> None:
    print(f"\n=== readme smoke: {title}", flush=True)


def check(ok: bool, what: str, output: str = "") -> None:
    if not ok:
        print(output[-6000:], flush=True)
        sys.exit(f"readme smoke FAILED: {what}")
    print(f"ok: {what}", flush=True)


def bash(script: str, *, cwd: Path, env: dict[str, str], timeout: float = STEP_S) -> str:
    """Run ``script`` with bash -e; return its output, failing the smoke on a non-zero exit."""
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
    )
    check(done.returncode == 0, f"exit 0 from: {script.strip()[:200]}", done.stdout)
    return done.stdout


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def main() -> None:
    scratch = Path(tempfile.mkdtemp(prefix="parley-readme-"))
    repo = scratch / "parley"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PARLEY_", "VIRTUAL_ENV"))}
    env["XDG_DATA_HOME"] = str(scratch / "data-home")  # a machine that never ran Parley
    env["COLUMNS"] = "120"

    step("README set-up command 1, as written")
    setup = readme_block(repo, "setup")
    print(setup, flush=True)
    log_path = scratch / "serve.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            ["bash", "-e", "-c", setup],
            cwd=repo,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, stopped as one below
        )
    try:
        deadline = time.monotonic() + INSTALL_AND_START_S
        while time.monotonic() < deadline and server.poll() is None:
            if ready("http://127.0.0.1:8000/readyz"):
                break
            time.sleep(1)
        output = log_path.read_text()
        check(server.poll() is None, "parley serve is running", output)
        check(ready("http://127.0.0.1:8000/readyz"), "/readyz answers 200", output)
        keys = KEY.findall(output)
        check(len(keys) == 1, "the one-time admin key was printed once", output)
        check("Traceback" not in output, "no traceback while starting", output)

        venv_env = {
            **env,
            "VIRTUAL_ENV": str(repo / ".venv"),
            "PATH": f"{repo / '.venv' / 'bin'}:{env['PATH']}",
        }
        step("parley --version")
        version = bash("parley --version", cwd=repo, env=venv_env)
        check(re.fullmatch(r"parley \d+\.\d+\.\d+\S*\n", version) is not None, version.strip())

        step('"Try it", as written')
        try_it = readme_block(repo, "try-it")
        print(try_it, flush=True)
        out = bash(try_it, cwd=repo, env={**venv_env, "PARLEY_KEY": keys[0]})
        print(out[-4000:], flush=True)
        check(
            re.search(r"\b[1-9]\d* ingested, 0 unchanged, 0 failed", out) is not None,
            "ingest stored every example document",
            out,
        )
        check("[1]" in out and "Sources" in out, "ask printed a cited answer", out)
        check("event: sources" in out and "event: token" in out, "the turn streamed", out)
        check(
            out.rstrip().split("event: done")[-1].lstrip().startswith("data: {"),
            "the stream ended with event: done",
            out,
        )
    finally:
        step("stop the server (Ctrl-C)")
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
    output = log_path.read_text()
    # uvicorn re-raises the SIGINT it handled once it has shut down, so a shell reports the
    # conventional 130 (128 + SIGINT); what matters is a clean shutdown and no traceback.
    check(
        server.returncode in (0, 130) and "Application shutdown complete" in output,
        f"parley serve shut down cleanly on Ctrl-C (exit {server.returncode})",
        output,
    )
    check("Traceback" not in output, "no traceback in the server's output", output)

    step("a built wheel, installed alone")
    wheel_dir = scratch / "dist"
    bash(f"python3 -m pip wheel --no-deps -q -w {wheel_dir} .", cwd=repo, env=env)
    wheels = list(wheel_dir.glob("parley-*.whl"))
    check(len(wheels) == 1, f"one wheel built: {wheels}")
    venv = scratch / "wheel-venv"
    bash(
        f"python3 -m venv {venv} && {venv}/bin/pip install -q {wheels[0]} && "
        f"{venv}/bin/parley --version && {venv}/bin/parley --help >/dev/null && "
        f"{venv}/bin/python -c 'import importlib.resources as r; "
        'assert r.files("parley").joinpath("py.typed").is_file()\'',
        cwd=scratch,
        env=env,
        timeout=INSTALL_AND_START_S,
    )
    check(True, "the wheel installs and runs")
    print("\nreadme smoke passed", flush=True)


if __name__ == "__main__":
    main()
