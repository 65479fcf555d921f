"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from parley.api.deps import ContainerDep
from parley.db import migrate

router = APIRouter(tags=["health"])


@router.get("/livez")
async def livez() -> dict[str, str]:
    """The process is up (no dependency checks)."""
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(container: ContainerDep) -> JSONResponse:
    """Per-component readiness; 503 while a required component is down."""
    components: dict[str, Any] = {}
    ready = True
    try:
        await asyncio.wait_for(container.check_database(), timeout=2.0)
        current, head = await migrate.current_revision(container.engine)
        if current != head:
            components["database"] = {"status": "degraded", "detail": "migrations pending"}
            ready = False
        else:
            components["database"] = {"status": "ok", "revision": current}
    except Exception as exc:
        components["database"] = {"status": "down", "detail": type(exc).__name__}
        ready = False
    components["embedder"] = {"status": "ok", "model": container.embedder.model_id}
    components["llm"] = {
        "status": "ok",
        "provider": container.llm.name,
        "model": container.llm.model,
    }
    components["jobs"] = {"status": "ok", "in_process": container.settings.jobs.run_in_process}
    body = {"status": "ok" if ready else "unavailable", "components": components}
    return JSONResponse(body, status_code=200 if ready else 503)
