"""The audit log of admin and sharing actions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from parley.db.models import AuditRow
from parley.domain.auth import Principal
from parley.errors import InvalidInput
from parley.repositories.pagination import Page
from parley.services.uow import UnitOfWorkFactory

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One action to record."""

    action: str
    actor: Principal
    target_type: str | None = None
    target_id: str | None = None
    ip: str | None = None
    request_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Filters of the audit listing."""

    action: str | None = None
    actor_id: str | None = None
    target_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class AuditService:
    """Append and list audit records."""

    def __init__(self, *, uow: UnitOfWorkFactory) -> None:
        self._uow = uow

    async def record(self, event: AuditEvent) -> None:
        """Append one record (also logged, so it reaches log shipping)."""
        row = AuditRow(
            action=event.action,
            actor_id=event.actor.user_id,
            actor_key_id=event.actor.key_id,
            target_type=event.target_type,
            target_id=event.target_id,
            ip=event.ip,
            request_id=event.request_id,
            detail=event.detail,
        )
        async with self._uow(write=True) as tx:
            await tx.audit.add(row)
            await tx.commit()
        log.info(
            "audit",
            action=event.action,
            actor_id=event.actor.user_id,
            target_type=event.target_type,
            target_id=event.target_id,
        )

    async def page(self, flt: AuditFilter, *, limit: int, cursor: str | None) -> Page[AuditRow]:
        """Records, newest first."""
        async with self._uow() as tx:
            return await tx.audit.page(
                limit=limit,
                cursor=cursor,
                action=flt.action,
                actor_id=flt.actor_id,
                target_id=flt.target_id,
                since=as_utc(flt.since),
                until=as_utc(flt.until),
            )


def as_utc(value: datetime | None) -> datetime | None:
    """``value`` as an aware UTC datetime; a naive one is taken to be UTC already.

    Stored times are UTC, and SQLite compares them as text without their offset, so a bound
    like ``08:00+02:00`` must become ``06:00+00:00`` before it reaches the query.
    """
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError as exc:  # e.g. 0001-01-01T00:00+14:00 is before year 1 in UTC
        raise InvalidInput("time filter out of range") from exc
