"""Liveness and readiness bodies."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ReadinessRead(BaseModel):
    """Whether this process can serve (200) or not (503), per component."""

    status: Literal["ok", "unavailable"]
    components: dict[str, dict[str, Any]] = Field(
        description='e.g. {"database": {"status": "ok", ...}, "llm": {...}}'
    )
