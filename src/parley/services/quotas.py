"""Per-user token quotas (daily and monthly), checked before generation.

Usage is not stored twice: it is the sum of ``input_tokens + output_tokens`` of the messages
a user's turns produced (``messages.owner_id``), so the accounting is exact by construction.
The check runs on every turn, so each user's running totals are cached in-process: loaded
with one statement, advanced by every turn this process persists, and re-read after
``refresh_s`` to pick up other instances' turns. Concurrent turns can overshoot a quota by at
most the turns already in flight when it was reached.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cachetools import TTLCache

from parley.domain.auth import Principal
from parley.errors import QuotaExceeded
from parley.services.uow import UnitOfWorkFactory
from parley.settings import QuotaSettings


@dataclass(slots=True)
class Usage:
    """A user's token use in the current UTC day and month."""

    day: str
    month: str
    day_input: int = 0
    day_output: int = 0
    month_input: int = 0
    month_output: int = 0

    @property
    def day_total(self) -> int:
        """Input + output tokens today."""
        return self.day_input + self.day_output

    @property
    def month_total(self) -> int:
        """Input + output tokens this month."""
        return self.month_input + self.month_output


def period_starts(now: datetime) -> tuple[datetime, datetime, datetime, datetime]:
    """(start of day, start of next day, start of month, start of next month), UTC."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    month = day.replace(day=1)
    days = calendar.monthrange(month.year, month.month)[1]
    return day, day + timedelta(days=1), month, month + timedelta(days=days)


class QuotaService:
    """Checks and reports token quotas."""

    def __init__(self, *, uow: UnitOfWorkFactory, settings: QuotaSettings, refresh_s: float = 30.0):
        self._uow = uow
        self._settings = settings
        self._cache: TTLCache[str, Usage] = TTLCache(maxsize=50_000, ttl=refresh_s)

    @property
    def enforced(self) -> bool:
        """Whether any quota is configured."""
        return bool(self._settings.daily_tokens or self._settings.monthly_tokens)

    async def usage(self, user_id: str, *, now: datetime | None = None) -> Usage:
        """Fresh totals from the database (one statement); also refreshes the cache."""
        now = now or datetime.now(UTC)
        day, _, month, _ = period_starts(now)
        async with self._uow() as tx:
            d_in, d_out, m_in, m_out = await tx.sessions.usage_since(
                user_id, month_start=month, day_start=day
            )
        usage = Usage(day.date().isoformat(), month.strftime("%Y-%m"), d_in, d_out, m_in, m_out)
        self._cache[user_id] = usage
        return usage

    async def check(self, actor: Principal) -> None:
        """Raise ``QuotaExceeded`` if the actor's daily or monthly tokens are used up."""
        if not self.enforced or actor.user_id is None:
            return
        now = datetime.now(UTC)
        day, next_day, _, next_month = period_starts(now)
        usage = self._cache.get(actor.user_id)
        if usage is None or usage.day != day.date().isoformat():
            usage = await self.usage(actor.user_id, now=now)
        daily, monthly = self._settings.daily_tokens, self._settings.monthly_tokens
        if monthly and usage.month_total >= monthly:
            raise QuotaExceeded(
                f"monthly token quota of {monthly} used up ({usage.month_total} tokens)",
                retry_after_s=int((next_month - now).total_seconds()) + 1,
            )
        if daily and usage.day_total >= daily:
            raise QuotaExceeded(
                f"daily token quota of {daily} used up ({usage.day_total} tokens)",
                retry_after_s=int((next_day - now).total_seconds()) + 1,
            )

    def record(self, user_id: str | None, *, input_tokens: int, output_tokens: int) -> None:
        """Advance the cached totals after a turn was persisted (the DB already has it)."""
        if user_id is None:
            return
        usage = self._cache.get(user_id)
        if usage is None:
            return
        if usage.day != datetime.now(UTC).date().isoformat():
            self._cache.pop(user_id, None)  # a new day: re-read on the next check
            return
        usage.day_input += input_tokens
        usage.day_output += output_tokens
        usage.month_input += input_tokens
        usage.month_output += output_tokens

    def limits(self) -> tuple[int, int]:
        """(daily, monthly) limits; 0 = unlimited."""
        return self._settings.daily_tokens, self._settings.monthly_tokens
