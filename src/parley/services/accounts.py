"""User administration and the caller's own account."""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from parley.db.base import utcnow
from parley.db.models import UserRow
from parley.domain.auth import ROLES, Principal, scopes_for_role
from parley.errors import Conflict, Forbidden, InvalidInput, NotFound
from parley.repositories.pagination import Page
from parley.services.access import AccessPolicy
from parley.services.auth import AuthService, normalize_email
from parley.services.passwords import MAX_PASSWORD_CHARS, Passwords
from parley.services.uow import UnitOfWorkFactory

# Deliberately simple: one @, no blanks, a dot in the domain. Delivery is not Parley's job.
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}\.[^@\s.]{1,63}$")


@dataclass(frozen=True, slots=True)
class UserChange:
    """A partial update (None = leave as is); ``revoke_keys`` also revokes every API key."""

    role: str | None = None
    password: str | None = None
    disabled: bool | None = None
    revoke_keys: bool = False


@dataclass(frozen=True, slots=True)
class OwnAccountChange:
    """What a user changes on their own account (None = leave as is).

    ``current_password`` is required whenever the account already has a password.
    """

    email: str | None = None
    password: str | None = None
    current_password: str | None = None


class AccountService:
    """Create, list, change and delete users."""

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        passwords: Passwords,
        auth: AuthService,
        access: AccessPolicy,
        password_min_chars: int,
    ) -> None:
        self._uow = uow
        self._passwords = passwords
        self._auth = auth
        self._access = access
        self._min = password_min_chars

    def _check_password(self, password: str) -> None:
        if not self._min <= len(password) <= MAX_PASSWORD_CHARS:
            raise InvalidInput(
                f"password must be {self._min}..{MAX_PASSWORD_CHARS} characters", field="password"
            )

    @staticmethod
    def _valid_email(email: str) -> str:
        email = normalize_email(email)
        if len(email) > 320 or not _EMAIL.match(email):
            raise InvalidInput("email is not a valid address", field="email")
        return email

    async def create(self, *, email: str, password: str | None, role: str = "member") -> UserRow:
        """A new user (admin route and ``parley users create``)."""
        email = self._valid_email(email)
        if role not in ROLES:
            raise InvalidInput("role must be 'admin' or 'member'", field="role")
        if password is not None:
            self._check_password(password)
        hashed = await self._passwords.hash(password) if password is not None else None
        async with self._uow(write=True) as tx:
            if await tx.accounts.user_by_email(email) is not None:
                raise Conflict("a user with this email already exists", field="email")
            try:
                row = await tx.accounts.add_user(
                    UserRow(email=email, password_hash=hashed, role=role)
                )
                await tx.commit()
            except IntegrityError as exc:
                raise Conflict("a user with this email already exists", field="email") from exc
        return row

    async def get(self, user_id: str) -> UserRow:
        """One user."""
        async with self._uow() as tx:
            row = await tx.accounts.user(user_id)
        if row is None:
            raise NotFound(f"user {user_id} not found")
        return row

    async def by_email(self, email: str) -> UserRow:
        """One user by email."""
        async with self._uow() as tx:
            row = await tx.accounts.user_by_email(normalize_email(email))
        if row is None:
            raise NotFound(f"user {email!r} not found", field="email")
        return row

    async def page(self, *, limit: int, cursor: str | None) -> Page[UserRow]:
        """Users, oldest first."""
        async with self._uow() as tx:
            return await tx.accounts.users_page(limit=limit, cursor=cursor)

    async def update(self, user_id: str, change: UserChange, *, actor: Principal) -> UserRow:
        """Change role, password or disabled state, and/or revoke every API key.

        Any of these ends every login of the user (a reset after a compromise, with a new
        password and ``revoke_keys``, leaves none of their old credentials working). The last
        enabled admin stays one.
        """
        if change.role is not None and change.role not in ROLES:
            raise InvalidInput("role must be 'admin' or 'member'", field="role")
        if change.password is not None:
            self._check_password(change.password)
        hashed = await self._passwords.hash(change.password) if change.password else None
        async with self._uow(write=True) as tx:
            row = await tx.accounts.user(user_id)
            if row is None:
                raise NotFound(f"user {user_id} not found")
            new_role = change.role is not None and change.role != row.role
            losing_admin = (
                row.role == "admin"
                and not row.disabled
                and ((new_role and change.role != "admin") or change.disabled is True)
            )
            if losing_admin and await tx.accounts.count_admins() <= 1:
                raise Conflict("the last enabled admin cannot be demoted or disabled")
            if change.role is not None:
                row.role = change.role
            if change.disabled is not None:
                row.disabled = change.disabled
            if hashed:
                row.password_hash = hashed
            signs_out = bool(hashed) or change.disabled is True or new_role or change.revoke_keys
            now = utcnow()
            if signs_out:
                await tx.accounts.revoke_families_of(user_id, at=now, reason="account")
            if change.revoke_keys:
                await tx.accounts.revoke_keys_of(user_id, at=now)
            await tx.commit()
        if signs_out:
            # Cached principals of every key and login of the user, here and on every instance.
            self._auth.forget(user_id=user_id)
            self._access.invalidate(user_id)
        return row

    async def update_own(self, change: OwnAccountChange, *, actor: Principal) -> UserRow:
        """Change the caller's own email and/or password.

        An account with a password needs ``current_password`` (wrong: Forbidden, counted
        toward the login lockout). A passwordless account (the bootstrap admin) may set one
        with an API key that carries every scope of its role and does not expire: anything
        narrower would turn a limited key into a full, permanent password login. A new
        password ends the user's other logins; the caller's own login stays.
        """
        if actor.user_id is None:
            raise InvalidInput("this changes a user account; sign in as a user")
        if change.email is None and change.password is None:
            raise InvalidInput("give a new email and/or password")
        email = self._valid_email(change.email) if change.email is not None else None
        if change.password is not None:
            self._check_password(change.password)
        async with self._uow() as tx:
            current = await tx.accounts.user(actor.user_id)
        if current is None:
            raise NotFound(f"user {actor.user_id} not found")
        await self._authorize_own_change(current, change, actor=actor)
        hashed = await self._passwords.hash(change.password) if change.password else None
        async with self._uow(write=True) as tx:
            row = await tx.accounts.user(actor.user_id)
            if row is None:
                raise NotFound(f"user {actor.user_id} not found")
            if row.password_hash != current.password_hash:
                # Changed while we checked: the check above was against the old password.
                raise Conflict("the account changed meanwhile; try again")
            if email is not None and email != row.email:
                if await tx.accounts.user_by_email(email) is not None:
                    raise Conflict("a user with this email already exists", field="email")
                row.email = email
            if hashed:
                row.password_hash = hashed
                await tx.accounts.revoke_families_of(
                    row.id, at=utcnow(), reason="password", keep=actor.family_id
                )
            try:
                await tx.commit()
            except IntegrityError as exc:
                raise Conflict("a user with this email already exists", field="email") from exc
        # Cached principals carry the email, and the ended logins must stop at once, on
        # every instance. Readable-collection caches are keyed by user id: nothing to drop.
        self._auth.forget(user_id=row.id)
        return row

    async def _authorize_own_change(
        self, user: UserRow, change: OwnAccountChange, *, actor: Principal
    ) -> None:
        if user.password_hash is not None:
            if not change.current_password:
                raise InvalidInput(
                    "current_password is required to change the email or password",
                    field="current_password",
                )
            await self._auth.confirm_password(
                email=user.email, stored=user.password_hash, password=change.current_password
            )
            return
        full_key = (
            actor.key_id is not None
            and actor.key_expires_at is None
            and actor.scopes >= scopes_for_role(user.role)
        )
        if not full_key:
            raise Forbidden(
                "this account has no password yet: set one with a non-expiring API key "
                "that carries every scope of your role"
            )

    async def delete(self, user_id: str, *, actor: Principal) -> None:
        """Delete a user with their keys, logins, grants and sessions.

        Refused while they own collections (delete or keep them first: nothing is lost by
        accident), and for the last enabled admin.
        """
        async with self._uow(write=True) as tx:
            row = await tx.accounts.user(user_id)
            if row is None:
                raise NotFound(f"user {user_id} not found")
            if row.role == "admin" and not row.disabled and await tx.accounts.count_admins() <= 1:
                raise Conflict("the last enabled admin cannot be deleted")
            owned = await tx.accounts.owns_collections(user_id)
            if owned:
                raise Conflict(f"the user still owns {owned} collection(s); delete them first")
            await tx.accounts.delete_user(user_id)
            await tx.commit()
        self._auth.forget(user_id=user_id)
        self._access.invalidate(user_id)
