"""Who is calling: principals, roles and scopes (pure types, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

Role = Literal["admin", "member"]
ROLES: tuple[Role, ...] = ("admin", "member")

SCOPE_CHAT = "chat"
SCOPE_INGEST = "ingest"
SCOPE_ADMIN = "admin"
ALL_SCOPES: frozenset[str] = frozenset({SCOPE_CHAT, SCOPE_INGEST, SCOPE_ADMIN})
MEMBER_SCOPES: frozenset[str] = frozenset({SCOPE_CHAT, SCOPE_INGEST})


def scopes_for_role(role: str) -> frozenset[str]:
    """The most a user of this role may do (an API key can only narrow it)."""
    return ALL_SCOPES if role == "admin" else MEMBER_SCOPES


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    ``user_id`` is None only for the *system* principal (the CLI, which has direct database
    access anyway, and local dev mode); everything it creates has no owner, which only
    admins see.
    """

    user_id: str | None
    role: Role
    scopes: frozenset[str]
    key_id: str | None = None
    family_id: str | None = None
    email: str | None = None
    key_expires_at: datetime | None = None
    """When the API key in use expires (None: no key, or no expiry)."""

    @property
    def is_admin(self) -> bool:
        """Admin role *and* the admin scope (an admin's chat-only key is not an admin)."""
        return self.role == "admin" and SCOPE_ADMIN in self.scopes

    @property
    def sees_all(self) -> bool:
        """Whether every tenant's data is visible: admins, but an admin's key only with the
        ``admin`` scope (a narrowed admin key, e.g. for CI, acts like a member's)."""
        return self.is_admin

    @property
    def viewer(self) -> str | None:
        """The user id that filters what this principal sees; None = no filter."""
        return None if self.sees_all else self.user_id

    @property
    def is_system(self) -> bool:
        """The CLI / dev-mode principal."""
        return self.user_id is None

    def has(self, scope: str) -> bool:
        """Whether this principal carries ``scope``."""
        return scope in self.scopes

    @property
    def subject(self) -> str:
        """The rate-limit identity: the user, whatever credential they use (counting per
        key would let a user multiply their budget by minting keys)."""
        return f"user:{self.user_id}" if self.user_id else "system"


SYSTEM = Principal(user_id=None, role="admin", scopes=ALL_SCOPES)
"""Full access without an owner: the CLI and local dev mode (``PARLEY_AUTH=off``)."""
