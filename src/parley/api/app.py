"""App factory with lifespan; the container is built at startup, never at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources

import structlog
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse

from parley.api.errors import install_error_handlers
from parley.api.middleware import RequestContextMiddleware, SecurityHeadersMiddleware
from parley.api.routes import chat, collections, health
from parley.container import Container
from parley.settings import Settings

log = structlog.get_logger(__name__)


def create_app(settings: Settings, *, container: Container | None = None) -> FastAPI:
    """Build the ASGI app. Pass ``container`` to inject fakes (tests, benchmarks)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = container is None
        built = container or Container.build(settings)
        await built.prepare_database()
        await built.start_background()
        app.state.container = built
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
        version="0.1.0",
        summary="Conversational RAG over your documents, with cited, streamed answers.",
        lifespan=lifespan,
        max_body_size=settings.limits.max_request_bytes,
    )
    if settings.server.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.server.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
            max_age=600,
        )
    app.add_middleware(SecurityHeadersMiddleware)
    app.add_middleware(RequestContextMiddleware)
    install_error_handlers(app)
    app.include_router(health.router)
    app.include_router(collections.router)
    app.include_router(chat.router)

    @app.get("/", include_in_schema=False, response_class=HTMLResponse)
    async def index() -> str:
        """The built-in web page."""
        return resources.files("parley.web").joinpath("index.html").read_text("utf-8")

    return app
