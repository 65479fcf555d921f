"""Accounts, tokens, keys, grants and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Scope = Literal["chat", "ingest", "admin"]


class LoginRequest(BaseModel):
    """Body of ``POST /v1/auth/login``."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class RefreshRequest(BaseModel):
    """Body of ``POST /v1/auth/refresh``."""

    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=200)


class LogoutRequest(BaseModel):
    """Optional body of ``POST /v1/auth/logout``."""

    model_config = ConfigDict(extra="forbid")

    refresh_token: str | None = Field(default=None, max_length=200)


class TokenPairRead(BaseModel):
    """Tokens: send ``access_token`` as ``Authorization: Bearer``; refresh before expiry."""

    access_token: str
    refresh_token: str
    token_type: str = "bearer"
    expires_in: int


class MeRead(BaseModel):
    """The caller."""

    id: str | None
    email: str | None
    role: str
    scopes: list[str]
    auth: Literal["token", "api_key", "dev"]
    key_id: str | None = None
    provider_keys: list[str] = Field(default_factory=list, description="providers only")


class MeUpdate(BaseModel):
    """Body of ``PATCH /v1/me``: a new email and/or password for your own account.

    ``current_password`` is required when the account already has a password; a
    passwordless account (the bootstrap admin) sets its first one with its full API key.
    """

    model_config = ConfigDict(extra="forbid")

    email: str | None = Field(default=None, min_length=3, max_length=320)
    password: str | None = Field(
        default=None, min_length=1, max_length=1024, description="the new password"
    )
    current_password: str | None = Field(default=None, min_length=1, max_length=1024)


class SetupRead(BaseModel):
    """Whether this installation still needs its first password (first-run sign-in)."""

    needs_setup: bool = Field(
        description="true while no account has a password: sign in with the bootstrap key"
    )


class AccountUsageRead(BaseModel):
    """Token use of the caller in the current UTC day and month, with the quotas."""

    day: str
    month: str
    day_input_tokens: int
    day_output_tokens: int
    day_total_tokens: int
    month_input_tokens: int
    month_output_tokens: int
    month_total_tokens: int
    daily_quota: int | None = Field(description="None = unlimited")
    monthly_quota: int | None = Field(description="None = unlimited")
    daily_remaining: int | None
    monthly_remaining: int | None


class KeyCreate(BaseModel):
    """Body of ``POST /v1/me/keys``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope] | None = Field(
        default=None, max_length=3, description="default: everything your role allows"
    )
    expires_at: datetime | None = None
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class KeyRead(BaseModel):
    """An API key (the secret is never shown again after creation)."""

    id: str
    name: str
    prefix: str
    scopes: list[str]
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime


class KeyCreated(KeyRead):
    """A new API key: ``key`` is shown this once."""

    key: str


class KeyList(BaseModel):
    """The caller's keys."""

    items: list[KeyRead]


class ProviderKeyPut(BaseModel):
    """Body of ``PUT /v1/me/provider-keys/{provider}``."""

    model_config = ConfigDict(extra="forbid")

    api_key: str = Field(min_length=1, max_length=512)


class ProviderKeyRead(BaseModel):
    """A stored provider key: which provider and when, never the key."""

    provider: str
    created_at: datetime
    updated_at: datetime


class UserCreate(BaseModel):
    """Body of ``POST /v1/admin/users``."""

    model_config = ConfigDict(extra="forbid")

    email: str = Field(min_length=3, max_length=320)
    password: str = Field(min_length=1, max_length=1024)
    role: Literal["admin", "member"] = "member"


class UserUpdate(BaseModel):
    """Body of ``PATCH /v1/admin/users/{id}``: any change ends the user's logins."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["admin", "member"] | None = None
    password: str | None = Field(default=None, min_length=1, max_length=1024)
    disabled: bool | None = None
    revoke_keys: bool = Field(
        default=False,
        description="also revoke every API key of the user (with a new password: a reset "
        "after a compromise that leaves none of their old credentials working)",
    )


class UserRead(BaseModel):
    """A user account."""

    id: str
    email: str
    role: str
    disabled: bool
    has_password: bool
    created_at: datetime


class UserList(BaseModel):
    """A page of users."""

    items: list[UserRead]
    next_cursor: str | None


class GrantCreate(BaseModel):
    """Body of ``POST /v1/collections/{id}/grants``: a user id or email, and a permission."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(default=None, max_length=32)
    email: str | None = Field(default=None, max_length=320)
    permission: Literal["read", "write"] = "read"


class GrantRead(BaseModel):
    """A collection shared with a user."""

    collection_id: str
    user_id: str
    permission: str
    created_at: datetime


class GrantList(BaseModel):
    """Grants of a collection."""

    items: list[GrantRead]


class AuditRead(BaseModel):
    """One audit record."""

    id: int
    action: str
    actor_id: str | None
    actor_key_id: str | None
    target_type: str | None
    target_id: str | None
    ip: str | None
    request_id: str | None
    detail: dict[str, Any]
    created_at: datetime


class AuditList(BaseModel):
    """A page of audit records, newest first."""

    items: list[AuditRead]
    next_cursor: str | None
