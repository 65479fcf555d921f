"""``parley serve``: bind the port first, start the API, then show the first credential."""

from __future__ import annotations

import errno
import socket
from typing import Annotated

import structlog
import typer
from rich.console import Console, Group
from rich.panel import Panel
from rich.text import Text

from parley.cli.common import EXIT_FAILED, STATE, fail, load_settings, report, run
from parley.container import Container
from parley.errors import ParleyError
from parley.logging import configure_logging
from parley.settings import Settings

log = structlog.get_logger(__name__)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (IPv4 or IPv6), as uvicorn would open it.

    Binding before the app starts turns "port in use" into a one-line error with a hint
    instead of a failure after the model has been loaded.
    """
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def bootstrap_banner(key: str, *, base_url: str) -> Panel:
    """The one-time admin key in a frame, with the two next steps."""
    body = Group(
        Text("No user existed, so an admin API key was created.", style="bold"),
        Text("It is shown only now and stored hashed: copy it.\n"),
        # Never wrapped, so it copies whole from a narrow terminal.
        Text(f"    {key}\n", style="bold green", no_wrap=True, overflow="ignore"),
        Text("Next steps:", style="bold"),
        Text(f"  1. Open {base_url}/ and sign in with this key;"),
        Text("     there you can give this admin an email and a password."),
        Text("  2. Or, in another shell:"),
        Text("       export PARLEY_KEY=pk_...   # the key above"),
        Text("       parley ingest examples/docs --collection demo"),
    )
    return Panel(body, title="Parley: first start", border_style="green", expand=False)


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
) -> None:
    """Run the HTTP API (and, on the embedded default, the ingestion job runner)."""
    from parley.api.app import create_app

    settings = load_settings()
    if host:
        settings.server.host = host
    if port:
        settings.server.port = port
    configure_logging(level=settings.server.log_level, json=settings.server.log_json)
    try:
        application = create_app(settings)
        # Building the container here surfaces configuration errors (a missing extra, an
        # unusable database URL) as one line before anything listens.
        key = run(_prepare(settings))
    except ParleyError as exc:
        report(exc)
    sock = _listen(settings)
    url = f"http://{_url_host(settings.server.host)}:{settings.server.port}"
    banner = bootstrap_banner(key, base_url=url) if key else None
    try:
        started = _run_uvicorn(application, sock, url=url, banner=banner)
    finally:
        sock.close()
    if not started:
        raise typer.Exit(code=EXIT_FAILED)


def _listen(settings: Settings) -> socket.socket:
    where = f"{settings.server.host}:{settings.server.port}"
    try:
        return bind(settings.server.host, settings.server.port)
    except OSError as exc:
        if STATE.debug:
            raise
        if exc.errno == errno.EADDRINUSE:
            fail(
                f"{where} is already in use (another `parley serve`?)",
                hint=f"choose another port: parley serve --port {settings.server.port + 1}",
            )
        fail(f"cannot listen on {where}: {exc.strerror or exc}")


def _run_uvicorn(
    application: object, sock: socket.socket, *, url: str, banner: Panel | None
) -> bool:
    """Serve on ``sock`` until stopped; True if the app started (lifespan completed)."""
    import uvicorn

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            if not self.started:
                return
            log.info("listening", url=url, detail="Ctrl-C to stop")
            # Printed after start-up so the key is not lost among the start-up log lines.
            if banner is not None:
                Console(stderr=True).print(banner)

    config = uvicorn.Config(
        application,  # type: ignore[arg-type]
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
        # Client addresses come from PARLEY_SECURITY__TRUSTED_PROXIES only: uvicorn's own
        # X-Forwarded-For handling would believe any loopback peer.
        proxy_headers=False,
    )
    server = Server(config)
    server.run(sockets=[sock])
    return server.started


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


async def _prepare(settings: Settings) -> str | None:
    """Migrate the database; on a first start with auth on, return the bootstrap key."""
    container = Container.build(settings)
    try:
        await container.prepare_database()
        return await container.auth.bootstrap() if settings.auth == "on" else None
    finally:
        await container.aclose()
