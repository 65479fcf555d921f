"""Readiness: per-component status for ``/readyz``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from parley.db import migrate
from parley.providers.embeddings.base import Embedder
from parley.providers.llm.base import LLM


class HasStatus(Protocol):
    """Anything that can say whether it is ``ok`` or ``degraded`` (e.g. the Redis guard)."""

    def status(self) -> str:
        """``ok`` or ``degraded``."""
        ...

    async def ping(self) -> bool:
        """Try the dependency now (bounded), updating :meth:`status`."""
        ...


@dataclass(slots=True)
class Readiness:
    """Whether the process can serve, and why."""

    ready: bool
    components: dict[str, dict[str, Any]] = field(default_factory=dict)


class HealthService:
    """Checks the database (connectivity, migrations, pool) and reports the other parts.

    Only the database is required: with Redis down requests are still served from the
    database, so Redis shows ``degraded`` without making the process unready.
    """

    def __init__(
        self,
        *,
        engine: AsyncEngine,
        embedder: Embedder,
        llm: LLM,
        jobs_in_process: bool,
        redis: HasStatus | None = None,
        rate_limits: Callable[[], str] | None = None,
        auth_mode: str = "on",
        timeout_s: float = 2.0,
    ) -> None:
        self._engine = engine
        self._embedder = embedder
        self._llm = llm
        self._jobs_in_process = jobs_in_process
        self._redis = redis
        self._rate_limits = rate_limits
        self._auth_mode = auth_mode
        self._timeout_s = timeout_s

    async def readiness(self) -> Readiness:
        """Probe what can be probed and describe the rest."""
        result = Readiness(ready=True)
        result.components["database"] = await self._database()
        if result.components["database"]["status"] != "ok":
            result.ready = False
        if self._redis is not None:
            # A failed probe is recorded in the store's status; it is reported, not raised.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._redis.ping(), timeout=self._timeout_s)
            result.components["redis"] = {"status": self._redis.status()}
        result.components["embedder"] = {"status": "ok", "model": self._embedder.model_id}
        result.components["llm"] = {
            "status": "ok",
            "provider": self._llm.name,
            "model": self._llm.model,
        }
        result.components["jobs"] = {"status": "ok", "in_process": self._jobs_in_process}
        # Rate limits fall back to in-process counting while Redis is away: degraded, served.
        result.components["auth"] = {
            "status": "ok",
            "mode": self._auth_mode,
            "rate_limits": self._rate_limits() if self._rate_limits is not None else "off",
        }
        return result

    async def _database(self) -> dict[str, Any]:
        try:
            async with asyncio.timeout(self._timeout_s):
                async with self._engine.connect() as conn:
                    await conn.execute(text("SELECT 1"))
                current, head = await migrate.current_revision(self._engine)
        except Exception as exc:
            return {"status": "down", "detail": type(exc).__name__}
        info: dict[str, Any] = {"status": "ok", "revision": current, "pool": self._pool()}
        if current != head:
            info.update(status="degraded", detail=f"migrations pending (at {current}, head {head})")
        return info

    def _pool(self) -> dict[str, int]:
        pool: Any = self._engine.pool
        stats: dict[str, int] = {}
        for name in ("size", "checkedin", "checkedout", "overflow"):
            method = getattr(pool, name, None)
            if callable(method):
                stats[name] = int(method())
        return stats
