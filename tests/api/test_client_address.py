"""One trust rule for client addresses (``api.security.client_ip``).

Forwarding headers count only when the TCP peer is in ``PARLEY_SECURITY__TRUSTED_PROXIES``,
for per-IP rate limits, the login lockout's per-IP budget, the audit log and dev mode alike.
Checked end to end on a real ``parley serve`` hit from a raw socket, and in-process for a
server that applies proxy headers itself (uvicorn's own middleware in front of the app).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from asgi_lifespan import LifespanManager
from starlette.requests import Request
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from parley.api import security
from parley.api.app import create_app
from parley.api.security import UNVERIFIED, client_ip
from parley.container import Container
from parley.settings import Settings
from tests.api.test_abuse_controls import running, with_limits
from tests.api.test_openapi_conformance import _admin_key
from tests.cli.test_accounts_cli import _free_port, _stop, _wait_ready
from tests.conftest import bearer, per_request_state

PASSWORD = "a long passphrase"


# --- the rule itself --------------------------------------------------------------------------


def _ip(headers: dict[str, str], trusted: list[str], peer: tuple[str, int]) -> str:
    scope = {
        "type": "http",
        "client": peer,
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    return client_ip(Request(scope), trusted)


@pytest.mark.parametrize(
    ("headers", "trusted", "peer", "expected"),
    [
        # Untrusted peer: no forwarding header counts, whichever it is.
        ({"X-Forwarded-For": "198.51.100.1"}, [], ("127.0.0.1", 5000), "127.0.0.1"),
        ({"X-Real-IP": "198.51.100.1"}, [], ("127.0.0.1", 5000), "127.0.0.1"),
        ({"Forwarded": "for=198.51.100.1"}, [], ("127.0.0.1", 5000), "127.0.0.1"),
        ({"X-Forwarded-For": "198.51.100.1"}, ["10.0.0.1"], ("192.0.2.9", 5000), "192.0.2.9"),
        # Trusted peer: the right-most hop that is not a trusted proxy.
        ({"X-Forwarded-For": "198.51.100.1"}, ["10.0.0.1"], ("10.0.0.1", 5000), "198.51.100.1"),
        (
            {"X-Forwarded-For": "192.0.2.1, 198.51.100.1, 10.0.0.2"},
            ["10.0.0.0/8"],
            ("10.0.0.1", 5000),
            "198.51.100.1",
        ),
        ({"X-Forwarded-For": "2001:db8::7"}, ["::1"], ("::1", 5000), "2001:db8::7"),
        # Only X-Forwarded-For is read from a trusted proxy.
        ({"X-Real-IP": "198.51.100.1"}, ["10.0.0.1"], ("10.0.0.1", 5000), "10.0.0.1"),
        # A peer that is one of the forwarded hops was put there by the server itself.
        ({"X-Forwarded-For": "198.51.100.1"}, [], ("198.51.100.1", 0), UNVERIFIED),
        ({"X-Forwarded-For": "[2001:db8::7]:80"}, [], ("2001:db8::7", 80), UNVERIFIED),
        ({"Forwarded": 'for="198.51.100.1:81"'}, [], ("198.51.100.1", 81), UNVERIFIED),
        # ... but a real peer keeps its address even if a local proxy forwarded for it.
        ({"X-Forwarded-For": "127.0.0.1"}, ["127.0.0.1"], ("127.0.0.1", 5000), "127.0.0.1"),
    ],
)
def test_client_ip_believes_forwarding_headers_only_from_trusted_proxies(
    headers: dict[str, str], trusted: list[str], peer: tuple[str, int], expected: str
) -> None:
    assert _ip(headers, trusted, peer) == expected


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
@pytest.mark.parametrize("header", ["X-Real-IP", "X-Forwarded-Host", "X-Forwarded-Proto"])
async def test_dev_mode_refuses_every_forwarding_header(
    settings: Settings, container: Container, header: str
) -> None:
    dev = settings.model_copy(update={"auth": "off"})
    container.settings = dev
    app = create_app(dev, container=container)
    async with LifespanManager(per_request_state(app)) as manager:
        transport = httpx.ASGITransport(app=manager.app, client=("127.0.0.1", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://parley.test") as c:
            assert (await c.get("/v1/me")).status_code == 200
            proxied = await c.get("/v1/me", headers={header: "203.0.113.5"})
            assert proxied.status_code == 403, proxied.text


# --- a server that applies proxy headers itself ------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_server_rewriting_the_peer_gains_a_rotating_header_nothing(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As ``uvicorn --proxy-headers`` (its default) serves the app: uvicorn's middleware
    rewrites ``scope["client"]`` from X-Forwarded-For for any loopback peer."""
    monkeypatch.setattr(security, "_last_rewrite_warning", 0.0)  # the warning is throttled
    async with running(with_limits(settings, auth_ip="3/minute")) as stack:
        _, key, _ = await stack.user("root@example.com", role="admin")
        proxied = ProxyHeadersMiddleware(stack.app, trusted_hosts="127.0.0.1")  # type: ignore[arg-type]
        transport = httpx.ASGITransport(app=proxied, client=("127.0.0.1", 40000))  # type: ignore[arg-type]
        c = httpx.AsyncClient(transport=transport, base_url="http://parley.test")
        async with c:
            with structlog.testing.capture_logs() as logs:
                statuses = [
                    (
                        await c.post(
                            "/v1/auth/login",
                            json={"email": f"nobody{i}@example.com", "password": PASSWORD},
                            headers={"X-Forwarded-For": f"198.51.100.{i + 1}"},
                        )
                    ).status_code
                    for i in range(5)
                ]
            assert statuses == [401, 401, 401, 429, 429]
            assert any(e["event"] == "client_address_rewritten_by_server" for e in logs)
            made = await c.post(
                "/v1/admin/users",
                json={"email": "new@example.com", "password": PASSWORD},
                headers={**bearer(key), "X-Forwarded-For": "203.0.113.9"},
            )
            assert made.status_code == 201, made.text
            audit = await c.get("/v1/admin/audit", params={"limit": 1}, headers=bearer(key))
            assert audit.json()["items"][0]["ip"] == UNVERIFIED


# --- a real `parley serve`, from a raw socket ------------------------------------------------


def _raw(port: int, method: str, path: str, *, headers: dict[str, str], body: Any = None) -> Any:
    """One HTTP/1.1 request written by hand on a TCP socket: (status, JSON body)."""
    payload = json.dumps(body).encode() if body is not None else b""
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: 127.0.0.1:{port}",
        "Connection: close",
        "Content-Type: application/json",
        f"Content-Length: {len(payload)}",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    head, _, content = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(content) if content else None


@contextmanager
def _served(tmp_path: Path, **env: str) -> Iterator[tuple[int, str]]:
    """A ``parley serve`` subprocess with a fresh data dir: (port, an admin's key)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")} | {
        "PARLEY_DATA_DIR": str(tmp_path / "data"),
        "PARLEY_EMBEDDINGS__PROVIDER": "fake",
        "PARLEY_EMBEDDINGS__DIMENSION": "64",
        "PARLEY_CHUNKING__TOKENIZER": "approx",
        "PARLEY_SECURITY__ARGON2_MEMORY_KIB": "1024",
        "PARLEY_SECURITY__ARGON2_TIME_COST": "1",
        "PARLEY_SERVER__LOG_LEVEL": "warning",
        "PARLEY_RATE_LIMITS__AUTH": "1000/minute",
        "PARLEY_RATE_LIMITS__AUTH_IP": "4/minute",
        **env,
    }
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "data",
        embeddings={"provider": "fake", "dimension": 64},
    )
    key = asyncio.run(_admin_key(settings))
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "parley", "serve", "--port", str(port)],
        env=environ,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
    )
    try:
        _wait_ready(port, proc)
        yield port, key
    finally:
        _stop(proc)


def _logins(port: int, forwarded: list[str]) -> list[int]:
    """A failed login per forwarded address, each for another email (so only the per-IP
    budget can run out)."""
    return [
        _raw(
            port,
            "POST",
            "/v1/auth/login",
            headers={"X-Forwarded-For": hop},
            body={"email": f"who{i}@example.com", "password": PASSWORD},
        )[0]
        for i, hop in enumerate(forwarded)
    ]


def _audited_ip(port: int, key: str, forwarded: str, email: str) -> str:
    """Create a user with ``forwarded`` as X-Forwarded-For; the address the audit recorded."""
    status, body = _raw(
        port,
        "POST",
        "/v1/admin/users",
        headers={**bearer(key), "X-Forwarded-For": forwarded},
        body={"email": email, "password": PASSWORD},
    )
    assert status == 201, body
    status, body = _raw(port, "GET", "/v1/admin/audit?limit=1", headers=bearer(key))
    assert status == 200, body
    ip: str = body["items"][0]["ip"]
    return ip


def test_serve_ignores_forwarded_for_from_an_untrusted_loopback_peer(tmp_path: Path) -> None:
    with _served(tmp_path) as (port, key):
        rotating = [f"198.51.100.{i}" for i in range(1, 8)]
        assert _logins(port, rotating) == [401] * 4 + [429] * 3
        assert _audited_ip(port, key, "203.0.113.9", "a@example.com") == "127.0.0.1"


def test_serve_uses_the_forwarded_address_from_a_trusted_proxy(tmp_path: Path) -> None:
    with _served(tmp_path, PARLEY_SECURITY__TRUSTED_PROXIES='["127.0.0.1"]') as (port, key):
        # Each forwarded client has its own per-IP budget...
        assert _logins(port, [f"198.51.100.{i}" for i in range(1, 8)]) == [401] * 7
        assert _logins(port, ["192.0.2.50"] * 5) == [401] * 4 + [429]
        # ... and the right-most hop not added by a trusted proxy is the client.
        assert _audited_ip(port, key, "203.0.113.9", "a@example.com") == "203.0.113.9"
        assert _audited_ip(port, key, "192.0.2.1, 203.0.113.7, 127.0.0.1", "b@example.com") == (
            "203.0.113.7"
        )
