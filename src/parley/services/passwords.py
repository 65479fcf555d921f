"""Password hashing with argon2id, off the event loop."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from parley.settings import SecuritySettings

MAX_PASSWORD_CHARS = 1024  # bounds the hashing work an attacker can ask for


class Passwords:
    """argon2id hashing; each call runs in a worker thread (tens of ms of CPU)."""

    def __init__(self, settings: SecuritySettings) -> None:
        self._hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        # Verified when the account does not exist, so a miss costs as much as a wrong
        # password and response times do not reveal which emails have accounts.
        self._dummy = self._hasher.hash("parley-timing-equalizer")

    async def hash(self, password: str) -> str:
        """A new argon2id hash of ``password``."""
        return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> bool:
        """Whether ``password`` matches ``stored`` (None = no password set: always False)."""
        target = stored or self._dummy

        def check() -> bool:
            try:
                return self._hasher.verify(target, password)
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        ok = await asyncio.to_thread(check)
        return ok and stored is not None

    def needs_rehash(self, stored: str) -> bool:
        """Whether ``stored`` was made with weaker parameters than today's."""
        return self._hasher.check_needs_rehash(stored)
