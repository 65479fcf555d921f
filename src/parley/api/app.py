"""App factory with lifespan; the container is built at startup, never at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

import structlog
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

from parley.api.errors import install_error_handlers
from parley.api.middleware import (
    BodyLimitMiddleware,
    ProblemCORSMiddleware,
    RequestContextMiddleware,
    SecurityHeadersMiddleware,
    UnhandledErrorMiddleware,
)
from parley.api.openapi import install_openapi
from parley.api.routes import admin, auth, chat, collections, health, me
from parley.api.security import PUBLIC_PATHS, AuthenticationMiddleware, is_loopback
from parley.container import Container
from parley.errors import ConfigurationError
from parley.settings import Settings
from parley.version import package_version

log = structlog.get_logger(__name__)


def create_app(settings: Settings, *, container: Container | None = None) -> FastAPI:
    """Build the ASGI app. Pass ``container`` to inject fakes (tests, benchmarks).

    Refuses local dev mode (``PARLEY_AUTH=off``) unless bound to a loopback address.
    """
    if settings.auth == "off" and not is_loopback(settings.server.host):
        raise ConfigurationError(
            f"PARLEY_AUTH=off is only allowed on a loopback address, not {settings.server.host!r}"
        )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = container is None
        built = container or Container.build(settings)
        await built.prepare_database()
        await built.start_background()
        app.state.container = built
        if settings.auth == "off":
            log.warning(
                "auth_disabled",
                detail="PARLEY_AUTH=off: local dev mode, every local request acts as admin",
            )
        log.info(
            "parley_started",
            database=built.engine.url.render_as_string(hide_password=True),
            embedder=built.embedder.model_id,
            llm=f"{built.llm.name}:{built.llm.model}",
        )
        try:
            yield
        finally:
            if owned:
                await built.aclose()
            else:
                await built.runner.stop()

    app = FastAPI(
        title="Parley",
        version=package_version(),
        summary="Conversational RAG over your documents, with cited, streamed answers.",
        lifespan=lifespan,
    )
    # Outermost first: request id → security headers → CORS → last-resort 500 → body limit
    # → authentication → (FastAPI's exception handling, routes). Every response, errors
    # included, passes through the first three, so each carries the request id, the security
    # headers and CORS. Innermost: credentials are verified before any body is read.
    app.add_middleware(AuthenticationMiddleware)
    # The size limit is ours, not FastAPI's ``max_body_size``: see BodyLimitMiddleware.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.limits.max_request_bytes)
    app.add_middleware(UnhandledErrorMiddleware)
    if settings.server.cors_origins:
        app.add_middleware(
            ProblemCORSMiddleware,
            allow_origins=settings.server.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=[
                "X-Request-ID",
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
            ],
            max_age=600,
        )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestContextMiddleware)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(auth.router)
    app.include_router(me.router)
    app.include_router(admin.router)
    app.include_router(collections.router)
    app.include_router(chat.router)

    install_openapi(app, public_paths=PUBLIC_PATHS)

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    async def index() -> str:
        """The built-in web page."""
        return resources.files("parley.web").joinpath("index.html").read_text("utf-8")

    return app
