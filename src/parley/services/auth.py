"""Authentication: login, refresh-token rotation, logout, API keys, bearer verification.

Verification is on every request, so it is cached: a verified API key (by digest) or token
family is trusted for ``key_cache_ttl_s`` without a database read. Revoking on this instance
drops the cached entry at once; other instances notice within the TTL.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import structlog
from cachetools import TTLCache
from sqlalchemy.exc import IntegrityError

from parley.db.base import utcnow
from parley.db.models import ApiKeyRow, RefreshTokenRow, TokenFamilyRow, UserRow
from parley.domain.auth import ALL_SCOPES, Principal, Role, scopes_for_role
from parley.errors import AccountLocked, Forbidden, InvalidInput, NotFound, Unauthenticated
from parley.services.invalidations import Invalidations
from parley.services.passwords import MAX_PASSWORD_CHARS, Passwords
from parley.services.rate_limits import LoginLockout
from parley.services.tokens import (
    TokenSigner,
    digest,
    key_prefix_of,
    new_api_key,
    new_refresh_token,
)
from parley.services.uow import UnitOfWorkFactory
from parley.settings import SecuritySettings

log = structlog.get_logger(__name__)

BOOTSTRAP_EMAIL = "admin@parley.local"
_TOUCH_EVERY_S = 60.0


@dataclass(frozen=True, slots=True)
class TokenPair:
    """What login and refresh return."""

    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"


@dataclass(frozen=True, slots=True)
class NewKey:
    """A freshly created API key: ``secret`` is shown this once and never again."""

    row: ApiKeyRow
    secret: str


def normalize_email(email: str) -> str:
    """Emails compare case-insensitively and without surrounding blanks."""
    return email.strip().lower()


def _as_utc(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes; everything Parley stores is UTC.
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


class AuthService:
    """Credentials in, principals out."""

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        signer: TokenSigner,
        passwords: Passwords,
        lockout: LoginLockout,
        settings: SecuritySettings,
        bus: Invalidations | None = None,
    ) -> None:
        self._uow = uow
        self._signer = signer
        self._passwords = passwords
        self._lockout = lockout
        self._settings = settings
        self._bus = bus or Invalidations()
        ttl = max(settings.key_cache_ttl_s, 0.001)
        self._keys: TTLCache[str, Principal] = TTLCache(maxsize=20_000, ttl=ttl)
        self._families: TTLCache[str, Principal] = TTLCache(maxsize=50_000, ttl=ttl)
        self._cache_enabled = settings.key_cache_ttl_s > 0
        self._touched: dict[str, datetime] = {}
        self._last_flush = 0.0
        # Once an account has a password, first-run setup is over for good: remembering it
        # makes the public ``GET /v1/auth/setup`` free (no query) from then on.
        self._set_up = False

    # bearer verification -----------------------------------------------------------------
    async def authenticate(self, credential: str) -> Principal:
        """The principal behind a bearer credential (API key or access token)."""
        if not credential or len(credential) > 4096:
            raise Unauthenticated("missing or malformed credentials")
        prefix = key_prefix_of(credential)
        if prefix is not None:
            return await self._by_key(prefix, credential)
        if credential.count(".") == 2:
            return await self._by_token(credential)
        raise Unauthenticated("missing or malformed credentials")

    async def _by_key(self, prefix: str, key: str) -> Principal:
        hashed = digest(key)
        cached = self._keys.get(hashed) if self._cache_enabled else None
        if cached is not None:
            if cached.key_expires_at is not None and cached.key_expires_at <= utcnow():
                self._keys.pop(hashed, None)
                raise Unauthenticated("this API key is revoked, expired or its user is disabled")
            self._touch(cached.key_id)
            return cached
        async with self._uow() as tx:
            found = await tx.accounts.key_with_user(prefix)
        if found is None:
            raise Unauthenticated("invalid API key")
        row, user = found
        if not hmac.compare_digest(row.key_hash, hashed):
            raise Unauthenticated("invalid API key")
        now = utcnow()
        expires = _as_utc(row.expires_at)
        if row.revoked_at is not None or user.disabled or (expires is not None and expires <= now):
            raise Unauthenticated("this API key is revoked, expired or its user is disabled")
        role: Role = "admin" if user.role == "admin" else "member"
        principal = Principal(
            user_id=user.id,
            role=role,
            scopes=frozenset(row.scopes) & scopes_for_role(role),
            key_id=row.id,
            email=user.email,
            key_expires_at=expires,
        )
        if self._cache_enabled:
            self._keys[hashed] = principal
        self._touch(row.id)
        return principal

    async def _by_token(self, token: str) -> Principal:
        claims = self._signer.verify(token)
        cached = self._families.get(claims.family_id) if self._cache_enabled else None
        if cached is not None and cached.user_id == claims.user_id:
            return cached
        async with self._uow() as tx:
            family = await tx.accounts.family(claims.family_id)
            user = await tx.accounts.user(claims.user_id) if family is not None else None
        if (
            family is None
            or user is None
            or family.user_id != user.id
            or family.revoked_at is not None
            or user.disabled
        ):
            raise Unauthenticated("this login has ended; sign in again")
        # The role comes from the database, not the token: a demotion applies at once.
        role: Role = "admin" if user.role == "admin" else "member"
        principal = Principal(
            user_id=user.id,
            role=role,
            scopes=scopes_for_role(role),
            family_id=family.id,
            email=user.email,
        )
        if self._cache_enabled:
            self._families[family.id] = principal
        return principal

    # login / refresh / logout ------------------------------------------------------------
    async def login(self, *, email: str, password: str) -> TokenPair:
        """Verify a password and start a login (token family)."""
        email = normalize_email(email)
        await self._raise_if_locked(email, "logins")
        async with self._uow() as tx:
            user = await tx.accounts.user_by_email(email)
        stored = user.password_hash if user is not None else None
        # Unknown emails are verified against nothing (same time) and lock the same way.
        ok = await self._verify(stored, password)
        if not ok or user is None or user.disabled:
            await self._record_failure(email, "logins")
            raise Unauthenticated("wrong email or password")
        await self._lockout.reset(email)
        async with self._uow(write=True) as tx:
            family = await tx.accounts.add_family(TokenFamilyRow(user_id=user.id))
            refresh = await self._new_refresh(tx, family.id)
            if stored is not None and self._passwords.needs_rehash(stored):
                fresh = await tx.accounts.user(user.id)
                if fresh is not None:
                    fresh.password_hash = await self._passwords.hash(password)
            await tx.commit()
        access, ttl = self._signer.issue(user_id=user.id, family_id=family.id, role=user.role)
        log.info("login", user_id=user.id)
        return TokenPair(access, refresh, ttl)

    async def confirm_password(self, *, email: str, stored: str | None, password: str) -> None:
        """Check an account's current password before changing its credentials.

        Failures count toward the same lockout as logins: a stolen access token must not
        be a way to guess the password without limit. Raises Forbidden (not Unauthenticated:
        the bearer credential itself is fine) or AccountLocked.
        """
        email = normalize_email(email)
        await self._raise_if_locked(email, "password checks")
        if not await self._verify(stored, password):
            await self._record_failure(email, "password checks")
            raise Forbidden("current_password is wrong", field="current_password")
        await self._lockout.reset(email)

    async def _verify(self, stored: str | None, password: str) -> bool:
        return len(password) <= MAX_PASSWORD_CHARS and await self._passwords.verify(
            stored, password
        )

    async def _raise_if_locked(self, email: str, attempts: str) -> None:
        _raise_locked(await self._lockout.locked_for(email), attempts)

    async def _record_failure(self, email: str, attempts: str) -> None:
        """Count a failed attempt; raise AccountLocked if it was the one too many."""
        _raise_locked(await self._lockout.record_failure(email), attempts)

    async def _new_refresh(self, tx: object, family_id: str) -> str:
        token = new_refresh_token()
        expires = utcnow() + timedelta(seconds=self._settings.refresh_token_ttl_s)
        await tx.accounts.add_refresh(  # type: ignore[attr-defined]
            RefreshTokenRow(token_hash=digest(token), family_id=family_id, expires_at=expires)
        )
        return token

    async def refresh(self, *, refresh_token: str) -> TokenPair:
        """Rotate: spend this refresh token, return a new pair in the same family.

        Presenting a token that was already spent means it was copied: the whole family is
        revoked, signing out both the thief and the user (who signs in again).
        """
        if not refresh_token.startswith("prt_") or len(refresh_token) > 200:
            raise Unauthenticated("invalid refresh token")
        hashed = digest(refresh_token)
        now = utcnow()
        reused_family: str | None = None
        async with self._uow(write=True) as tx:
            found = await tx.accounts.refresh_for_update(hashed)
            if found is None:
                raise Unauthenticated("invalid refresh token")
            row, family, user = found
            if row.used_at is not None or not await tx.accounts.spend_refresh(hashed, now):
                await tx.accounts.revoke_family(family.id, at=now, reason="reuse")
                await tx.commit()
                reused_family = family.id
            else:
                expires = _as_utc(row.expires_at)
                if (
                    family.revoked_at is not None
                    or user.disabled
                    or (expires is not None and expires <= now)
                ):
                    raise Unauthenticated("this login has ended; sign in again")
                token = await self._new_refresh(tx, family.id)
                await tx.commit()
        if reused_family is not None:
            self._end_family(reused_family)
            log.warning("refresh_token_reuse", family_id=reused_family, user_id=user.id)
            raise Unauthenticated(
                "this refresh token was already used; the login was revoked for safety"
            )
        access, ttl = self._signer.issue(user_id=user.id, family_id=family.id, role=user.role)
        return TokenPair(access, token, ttl)

    async def logout(self, *, actor: Principal, refresh_token: str | None = None) -> None:
        """End the caller's login (its refresh and access tokens stop working)."""
        family_id = actor.family_id
        if family_id is None and refresh_token:
            async with self._uow() as tx:
                found = await tx.accounts.refresh_for_update(digest(refresh_token))
            if found is not None and found[2].id == actor.user_id:
                family_id = found[1].id
        if family_id is None:
            raise InvalidInput(
                "logout ends a login made with a password; revoke an API key with "
                "DELETE /v1/me/keys/{id}"
            )
        async with self._uow(write=True) as tx:
            await tx.accounts.revoke_family(family_id, at=utcnow(), reason="logout")
            await tx.commit()
        self._end_family(family_id)

    # API keys ----------------------------------------------------------------------------
    async def create_key(
        self,
        *,
        actor: Principal,
        name: str,
        scopes: Sequence[str] | None = None,
        expires_at: datetime | None = None,
        user_id: str | None = None,
    ) -> NewKey:
        """A new key for the actor (or, for admins and the CLI, for ``user_id``)."""
        owner_id = user_id or actor.user_id
        if owner_id is None:
            raise InvalidInput("say which user the key is for", field="user_id")
        if owner_id != actor.user_id and not actor.is_admin:
            raise NotFound(f"user {owner_id} not found")
        name = name.strip()
        if not 1 <= len(name) <= 200:
            raise InvalidInput("name must be 1..200 characters", field="name")
        if expires_at is not None and _as_utc(expires_at) <= utcnow():  # type: ignore[operator]
            raise InvalidInput("expires_at must be in the future", field="expires_at")
        # A key cannot outlive the key that creates it: otherwise a leaked short-lived key
        # could mint itself a permanent one.
        limit = actor.key_expires_at
        if limit is not None:
            if expires_at is None:
                expires_at = limit
            elif _as_utc(expires_at) > limit:  # type: ignore[operator]
                raise Forbidden("a key cannot expire after the key that creates it")
        async with self._uow(write=True) as tx:
            user = await tx.accounts.user(owner_id)
            if user is None:
                raise NotFound(f"user {owner_id} not found")
            allowed = scopes_for_role(user.role)
            if scopes is not None:
                wanted = set(scopes)
            elif actor.key_id is not None:
                # By default a key gets what its creator's key may do (see below).
                wanted = set(allowed & actor.scopes)
            else:
                wanted = set(allowed)
            if not wanted or not wanted <= ALL_SCOPES:
                raise InvalidInput("scopes must be a non-empty subset of chat, ingest, admin")
            if not wanted <= allowed:
                raise Forbidden("a key cannot carry scopes beyond its user's role")
            # Nor beyond the scopes of the key that creates it.
            if actor.key_id is not None and not wanted <= actor.scopes:
                raise Forbidden("a key cannot create a key with more scopes than its own")
            prefix, secret = new_api_key()
            row = ApiKeyRow(
                user_id=user.id,
                name=name,
                prefix=prefix,
                key_hash=digest(secret),
                scopes=sorted(wanted),
                expires_at=expires_at,
            )
            await tx.accounts.add_key(row)
            await tx.commit()
        return NewKey(row, secret)

    async def keys(self, *, actor: Principal) -> list[ApiKeyRow]:
        """The actor's keys (no secrets: they are not stored)."""
        if actor.user_id is None:
            return []
        async with self._uow() as tx:
            return await tx.accounts.keys_of(actor.user_id)

    async def revoke_key(
        self, key_id: str, *, actor: Principal, own_only: bool = False
    ) -> ApiKeyRow:
        """Revoke one of the actor's keys (admins: anyone's, unless ``own_only``).

        Effective immediately here and, through the invalidation event, on other instances.
        """
        async with self._uow(write=True) as tx:
            row = await tx.accounts.key(key_id)
            mine = row is not None and row.user_id == actor.user_id
            if row is None or not (mine or (actor.is_admin and not own_only)):
                raise NotFound(f"key {key_id} not found")
            # With a key, only keys it could have created itself: a chat-only key must not
            # be able to lock its owner out by revoking their full key.
            narrower = set(row.scopes) <= actor.scopes
            if actor.key_id is not None and row.id != actor.key_id and not narrower:
                raise Forbidden("a key can only revoke keys with no more scopes than its own")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            await tx.commit()
        self.forget(key_id=key_id)
        return row

    def _end_family(self, family_id: str) -> None:
        self._families.pop(family_id, None)
        self._bus.publish(family_id=family_id)

    def forget(self, *, key_id: str | None = None, user_id: str | None = None) -> None:
        """Drop cached principals of a key or of every credential of a user, here and (by
        publishing the event) on every other instance."""
        self._forget_local(key_id=key_id, user_id=user_id)
        event = {k: v for k, v in (("key_id", key_id), ("user_id", user_id)) if v}
        if event:
            self._bus.publish(**event)

    def apply(self, event: Mapping[str, str]) -> None:
        """An invalidation published by another instance (or a flush after a gap)."""
        if "all" in event:
            self._keys.clear()
            self._families.clear()
            return
        self._forget_local(key_id=event.get("key_id"), user_id=event.get("user_id"))
        if "family_id" in event:
            self._families.pop(event["family_id"], None)

    def _forget_local(self, *, key_id: str | None, user_id: str | None) -> None:
        for digest_, principal in list(self._keys.items()):
            if (key_id and principal.key_id == key_id) or (
                user_id and principal.user_id == user_id
            ):
                self._keys.pop(digest_, None)
        if user_id:
            for family_id, principal in list(self._families.items()):
                if principal.user_id == user_id:
                    self._families.pop(family_id, None)

    def _touch(self, key_id: str | None) -> None:
        # Last-used times are batched: one write per key per minute at most, off the path.
        if key_id is not None:
            self._touched[key_id] = utcnow()

    async def flush_last_used(self) -> None:
        """Write the batched last-used times (called periodically and at shutdown)."""
        if not self._touched:
            return
        touched, self._touched = self._touched, {}
        try:
            async with self._uow(write=True) as tx:
                await tx.accounts.touch_keys(touched)
                await tx.commit()
        except Exception:  # bookkeeping only: never fail a request or the shutdown for it
            log.warning("last_used_flush_failed", exc_info=True)

    async def run_touch_flusher(self) -> None:
        """Background loop flushing last-used times every minute."""
        while True:
            await asyncio.sleep(_TOUCH_EVERY_S)
            await self.flush_last_used()

    # first run ---------------------------------------------------------------------------
    async def needs_setup(self) -> bool:
        """Whether no account has a password yet, so an API key (the bootstrap key printed
        at first start) is the only way in. One cheap query until setup is over, then none."""
        if self._set_up:
            return False
        async with self._uow() as tx:
            self._set_up = await tx.accounts.any_password()
        return not self._set_up

    async def bootstrap(self) -> str | None:
        """When no account exists: create the bootstrap admin and return its one-time key.

        Returns None if any user exists (or another process won the race), so the key is
        printed exactly once in the installation's life.
        """
        async with self._uow() as tx:
            if await tx.accounts.any_user():
                return None
        try:
            async with self._uow(write=True) as tx:
                if await tx.accounts.any_user():
                    return None
                user = await tx.accounts.add_user(
                    UserRow(email=BOOTSTRAP_EMAIL, role="admin", password_hash=None)
                )
                prefix, secret = new_api_key()
                await tx.accounts.add_key(
                    ApiKeyRow(
                        user_id=user.id,
                        name="bootstrap",
                        prefix=prefix,
                        key_hash=digest(secret),
                        scopes=sorted(ALL_SCOPES),
                    )
                )
                await tx.commit()
        except IntegrityError:
            return None
        return secret


def _raise_locked(locked_for_s: int, attempts: str) -> None:
    """AccountLocked when the lockout answers a wait (seconds > 0); nothing otherwise."""
    if locked_for_s:
        raise AccountLocked(
            f"too many failed {attempts}; the account is locked for a while",
            retry_after_s=locked_for_s,
        )
