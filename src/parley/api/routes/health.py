"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from parley.api.deps import ContainerDep
from parley.api.schemas.health import ReadinessRead

router = APIRouter(tags=["health"])


@router.get("/livez")
async def livez() -> dict[str, str]:
    """The process is up (no dependency checks)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=ReadinessRead,
    responses={503: {"model": ReadinessRead, "description": "A required component is down"}},
)
async def readyz(container: ContainerDep) -> JSONResponse:
    """Per-component readiness; 503 while a required component is down."""
    result = await container.health.readiness()
    body = {"status": "ok" if result.ready else "unavailable", "components": result.components}
    return JSONResponse(body, status_code=200 if result.ready else 503)
