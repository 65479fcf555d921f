"""``parley users``/``parley keys`` and the first-run bootstrap key of ``parley serve``."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from parley.cli.main import app

runner = CliRunner()
KEY = re.compile(r"pk_[A-Za-z0-9]{8}_[A-Za-z0-9_-]{20,}")


def test_users_create_and_keys_create(env: Path) -> None:
    made = runner.invoke(
        app,
        ["users", "create", "--admin", "--email", "Root@Example.com", "--password", "x" * 14],
    )
    assert made.exit_code == 0, made.output
    assert "created admin root@example.com" in made.output
    member = runner.invoke(
        app, ["users", "create", "--email", "m@example.com", "--password", "y" * 14]
    )
    assert member.exit_code == 0, member.output
    dup = runner.invoke(
        app, ["users", "create", "--email", "m@example.com", "--password", "y" * 14]
    )
    assert dup.exit_code == 1 and "conflict" in dup.output
    weak = runner.invoke(
        app, ["users", "create", "--email", "w@example.com", "--password", "short"]
    )
    assert weak.exit_code == 1 and "password" in weak.output
    listed = runner.invoke(app, ["users", "list"])
    assert "root@example.com" in listed.output and "m@example.com" in listed.output
    # The only admin is the default owner of a new key.
    key = runner.invoke(app, ["keys", "create", "--name", "ci"])
    assert key.exit_code == 0, key.output
    assert KEY.search(key.output)
    scoped = runner.invoke(app, ["keys", "create", "--email", "m@example.com", "--scope", "admin"])
    assert scoped.exit_code == 1 and "forbidden" in scoped.output  # beyond a member's role


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(env_dir: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "parley", "serve", "--port", str(port)],
        env={**os.environ, "PARLEY_SERVER__LOG_LEVEL": "warning"},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=env_dir.parent,
    )


def _wait_ready(port: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        try:
            if httpx.get(f"http://127.0.0.1:{port}/livez", timeout=0.5).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("server did not start")


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err or ""


def test_serve_prints_a_bootstrap_key_once_and_auth_is_on(env: Path) -> None:
    port = _free_port()
    proc = _serve(env, port)
    try:
        _wait_ready(port, proc)
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/v1/collections").status_code == 401
    finally:
        output = _stop(proc)
    found = KEY.findall(output)
    assert len(found) == 1, output
    secret_file = env / "jwt_secret"
    assert secret_file.exists() and (secret_file.stat().st_mode & 0o777) == 0o600
    proc = _serve(env, port)
    try:
        _wait_ready(port, proc)
        me = httpx.get(
            f"http://127.0.0.1:{port}/v1/me", headers={"Authorization": f"Bearer {found[0]}"}
        )
        assert me.status_code == 200 and me.json()["role"] == "admin"
    finally:
        second = _stop(proc)
    assert not KEY.search(second)  # printed once in the installation's life


def test_serve_refuses_dev_mode_on_a_public_address(
    env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PARLEY_AUTH", "off")
    result = runner.invoke(app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2  # a configuration error
    assert "loopback" in result.output


def test_serve_refuses_a_short_jwt_secret(env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_JWT_SECRET", "too-short")
    result = runner.invoke(app, ["serve"])
    assert result.exit_code == 2  # a configuration error
    assert "32 bytes" in result.output
