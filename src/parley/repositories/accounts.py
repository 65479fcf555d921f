"""Users, API keys, refresh-token families and users' provider keys."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from parley.db.models import (
    ApiKeyRow,
    CollectionRow,
    ProviderKeyRow,
    RefreshTokenRow,
    TokenFamilyRow,
    UserRow,
)
from parley.repositories.pagination import Page, keyset_page
from parley.repositories.text import require_storable, storable


class AccountRepository:
    """Queries on accounts and their credentials."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    # users -------------------------------------------------------------------------------
    async def add_user(self, row: UserRow) -> UserRow:
        """Stage a new user (flushed so a duplicate email surfaces here)."""
        require_storable(row.email, field="email")
        self.session.add(row)
        await self.session.flush()
        return row

    async def user(self, user_id: str) -> UserRow | None:
        """One user by id."""
        if not storable(user_id):
            return None
        return await self.session.get(UserRow, user_id)

    async def user_by_email(self, email: str) -> UserRow | None:
        """One user by (normalized) email."""
        if not storable(email):
            return None
        return await self.session.scalar(select(UserRow).where(UserRow.email == email))

    async def users_by_ids(self, user_ids: Sequence[str]) -> dict[str, UserRow]:
        """Users by id, in one statement."""
        user_ids = [u for u in user_ids if storable(u)]
        if not user_ids:
            return {}
        rows = await self.session.scalars(select(UserRow).where(UserRow.id.in_(user_ids)))
        return {r.id: r for r in rows}

    async def any_user(self) -> bool:
        """Whether at least one account exists."""
        return (await self.session.scalar(select(UserRow.id).limit(1))) is not None

    async def any_password(self) -> bool:
        """Whether at least one account has a password (first-run setup is over)."""
        stmt = select(UserRow.id).where(UserRow.password_hash.is_not(None)).limit(1)
        return (await self.session.scalar(stmt)) is not None

    async def users_page(self, *, limit: int, cursor: str | None) -> Page[UserRow]:
        """Users, oldest first."""
        return await keyset_page(
            self.session,
            select(UserRow),
            created=UserRow.created_at,
            ident=UserRow.id,
            limit=limit,
            cursor=cursor,
        )

    async def count_admins(self) -> int:
        """Enabled admins (the last one cannot be demoted, disabled or deleted)."""
        stmt = select(func.count(UserRow.id)).where(UserRow.role == "admin", ~UserRow.disabled)
        return int(await self.session.scalar(stmt) or 0)

    async def owns_collections(self, user_id: str) -> int:
        """How many collections the user owns."""
        stmt = select(func.count(CollectionRow.id)).where(CollectionRow.owner_id == user_id)
        return int(await self.session.scalar(stmt) or 0)

    async def delete_user(self, user_id: str) -> bool:
        """Delete a user; keys, token families, grants, sessions and provider keys cascade."""
        if not storable(user_id):
            return False
        result = await self.session.execute(delete(UserRow).where(UserRow.id == user_id))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    # API keys ----------------------------------------------------------------------------
    async def add_key(self, row: ApiKeyRow) -> ApiKeyRow:
        """Stage a new API key."""
        require_storable(row.name, field="name")
        self.session.add(row)
        await self.session.flush()
        return row

    async def key_with_user(self, prefix: str) -> tuple[ApiKeyRow, UserRow] | None:
        """A key by its public prefix, with its user, in one statement."""
        stmt = (
            select(ApiKeyRow, UserRow)
            .join(UserRow, UserRow.id == ApiKeyRow.user_id)
            .where(ApiKeyRow.prefix == prefix)
        )
        row = (await self.session.execute(stmt)).first()
        return (row[0], row[1]) if row is not None else None

    async def keys_of(self, user_id: str) -> list[ApiKeyRow]:
        """A user's keys, newest first (revoked ones included, marked)."""
        stmt = (
            select(ApiKeyRow)
            .where(ApiKeyRow.user_id == user_id)
            .order_by(ApiKeyRow.created_at.desc(), ApiKeyRow.id)
        )
        return list((await self.session.scalars(stmt)).all())

    async def key(self, key_id: str) -> ApiKeyRow | None:
        """One key by id."""
        if not storable(key_id):
            return None
        return await self.session.get(ApiKeyRow, key_id)

    async def revoke_keys_of(self, user_id: str, *, at: datetime) -> list[str]:
        """Revoke every key of a user not revoked yet; return their ids."""
        stmt = select(ApiKeyRow.id).where(
            ApiKeyRow.user_id == user_id, ApiKeyRow.revoked_at.is_(None)
        )
        ids = list((await self.session.scalars(stmt)).all())
        if ids:
            await self.session.execute(
                update(ApiKeyRow).where(ApiKeyRow.id.in_(ids)).values(revoked_at=at)
            )
        return ids

    async def touch_keys(self, used: dict[str, datetime]) -> None:
        """Record last-used times (batched, off the request path)."""
        for key_id, at in used.items():
            await self.session.execute(
                update(ApiKeyRow).where(ApiKeyRow.id == key_id).values(last_used_at=at)
            )

    # refresh-token families --------------------------------------------------------------
    async def add_family(self, row: TokenFamilyRow) -> TokenFamilyRow:
        """Stage a new login (token family)."""
        self.session.add(row)
        await self.session.flush()
        return row

    async def family(self, family_id: str) -> TokenFamilyRow | None:
        """One token family."""
        return await self.session.get(TokenFamilyRow, family_id)

    async def add_refresh(self, row: RefreshTokenRow) -> None:
        """Stage a refresh token."""
        self.session.add(row)
        await self.session.flush()

    async def refresh_for_update(
        self, token_hash: str
    ) -> tuple[RefreshTokenRow, TokenFamilyRow, UserRow] | None:
        """A refresh token with its family and user, locked against a concurrent rotation."""
        stmt = (
            select(RefreshTokenRow, TokenFamilyRow, UserRow)
            .join(TokenFamilyRow, TokenFamilyRow.id == RefreshTokenRow.family_id)
            .join(UserRow, UserRow.id == TokenFamilyRow.user_id)
            .where(RefreshTokenRow.token_hash == token_hash)
            .with_for_update(of=RefreshTokenRow)
        )
        row = (await self.session.execute(stmt)).first()
        return (row[0], row[1], row[2]) if row is not None else None

    async def spend_refresh(self, token_hash: str, at: datetime) -> bool:
        """Mark a refresh token used; False if it already was (a concurrent or replayed use)."""
        result = await self.session.execute(
            update(RefreshTokenRow)
            .where(RefreshTokenRow.token_hash == token_hash, RefreshTokenRow.used_at.is_(None))
            .values(used_at=at)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def revoke_family(self, family_id: str, *, at: datetime, reason: str) -> None:
        """Revoke a login: its refresh tokens and access tokens stop working."""
        await self.session.execute(
            update(TokenFamilyRow)
            .where(TokenFamilyRow.id == family_id, TokenFamilyRow.revoked_at.is_(None))
            .values(revoked_at=at, revoked_reason=reason)
        )

    async def revoke_families_of(
        self, user_id: str, *, at: datetime, reason: str, keep: str | None = None
    ) -> list[str]:
        """Revoke every login of a user (except the login ``keep``); return their ids."""
        stmt = select(TokenFamilyRow.id).where(
            TokenFamilyRow.user_id == user_id, TokenFamilyRow.revoked_at.is_(None)
        )
        if keep is not None:
            stmt = stmt.where(TokenFamilyRow.id != keep)
        ids = list((await self.session.scalars(stmt)).all())
        if ids:
            await self.session.execute(
                update(TokenFamilyRow)
                .where(TokenFamilyRow.id.in_(ids))
                .values(revoked_at=at, revoked_reason=reason)
            )
        return ids

    # provider keys -----------------------------------------------------------------------
    async def provider_keys(self, user_id: str) -> list[ProviderKeyRow]:
        """A user's stored provider keys (ciphertext only)."""
        stmt = (
            select(ProviderKeyRow)
            .where(ProviderKeyRow.user_id == user_id)
            .order_by(ProviderKeyRow.provider)
        )
        return list((await self.session.scalars(stmt)).all())

    async def provider_key(self, user_id: str, provider: str) -> ProviderKeyRow | None:
        """One stored provider key."""
        if not storable(provider):
            return None
        stmt = select(ProviderKeyRow).where(
            ProviderKeyRow.user_id == user_id, ProviderKeyRow.provider == provider
        )
        return await self.session.scalar(stmt)

    async def put_provider_key(self, row: ProviderKeyRow) -> None:
        """Stage a new provider key row."""
        require_storable(row.provider, field="provider")
        self.session.add(row)
        await self.session.flush()

    async def delete_provider_key(self, user_id: str, provider: str) -> bool:
        """Remove a stored provider key."""
        if not storable(provider):
            return False
        result = await self.session.execute(
            delete(ProviderKeyRow).where(
                ProviderKeyRow.user_id == user_id, ProviderKeyRow.provider == provider
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
