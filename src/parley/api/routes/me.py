"""The caller's own account: identity, usage, API keys, provider keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from fastapi import APIRouter, Response, status

from parley.api.deps import ContainerDep
from parley.api.schemas.auth import (
    KeyCreate,
    KeyCreated,
    KeyList,
    KeyRead,
    MeRead,
    ProviderKeyPut,
    ProviderKeyRead,
    UsageRead,
)
from parley.api.security import AnyActor
from parley.db.models import ApiKeyRow
from parley.errors import InvalidInput
from parley.services.provider_keys import ProviderKeyInfo

router = APIRouter(prefix="/v1/me", tags=["me"])


def key_read(row: ApiKeyRow) -> KeyRead:
    """An API key as shown (no secret)."""
    return KeyRead(
        id=row.id,
        name=row.name,
        prefix=row.prefix,
        scopes=list(row.scopes),
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
        created_at=row.created_at,
    )


def _provider_key(info: ProviderKeyInfo) -> ProviderKeyRead:
    return ProviderKeyRead(
        provider=info.provider, created_at=info.created_at, updated_at=info.updated_at
    )


@router.get("", response_model=MeRead)
async def me(actor: AnyActor, container: ContainerDep) -> MeRead:
    """Who the credential belongs to, its role and scopes."""
    kind: Literal["token", "api_key", "dev"] = (
        "dev" if actor.is_system else "api_key" if actor.key_id else "token"
    )
    providers = (
        [p.provider for p in await container.provider_keys.list(actor=actor)]
        if actor.user_id
        else []
    )
    return MeRead(
        id=actor.user_id,
        email=actor.email,
        role=actor.role,
        scopes=sorted(actor.scopes),
        auth=kind,
        key_id=actor.key_id,
        provider_keys=providers,
    )


@router.get("/usage", response_model=UsageRead)
async def usage(actor: AnyActor, container: ContainerDep) -> UsageRead:
    """Tokens used today and this month (UTC), against the configured quotas."""
    daily, monthly = container.quotas.limits()
    if actor.user_id is None:
        raise InvalidInput("usage is tracked per user account; sign in as a user")
    u = await container.quotas.usage(actor.user_id)
    return UsageRead(
        day=u.day,
        month=u.month,
        day_input_tokens=u.day_input,
        day_output_tokens=u.day_output,
        day_total_tokens=u.day_total,
        month_input_tokens=u.month_input,
        month_output_tokens=u.month_output,
        month_total_tokens=u.month_total,
        daily_quota=daily or None,
        monthly_quota=monthly or None,
        daily_remaining=max(daily - u.day_total, 0) if daily else None,
        monthly_remaining=max(monthly - u.month_total, 0) if monthly else None,
    )


@router.post("/keys", status_code=status.HTTP_201_CREATED, response_model=KeyCreated)
async def create_key(body: KeyCreate, actor: AnyActor, container: ContainerDep) -> KeyCreated:
    """Create an API key. The ``key`` in the response is shown this once: store it."""
    expires_at = body.expires_at
    if body.expires_in_days is not None:
        if expires_at is not None:
            raise InvalidInput("give expires_at or expires_in_days, not both")
        expires_at = datetime.now(UTC) + timedelta(days=body.expires_in_days)
    new = await container.auth.create_key(
        actor=actor, name=body.name, scopes=body.scopes, expires_at=expires_at
    )
    return KeyCreated(**key_read(new.row).model_dump(), key=new.secret)


@router.get("/keys", response_model=KeyList)
async def list_keys(actor: AnyActor, container: ContainerDep) -> KeyList:
    """The caller's API keys (prefix, scopes, dates; never the secret)."""
    return KeyList(items=[key_read(k) for k in await container.auth.keys(actor=actor)])


@router.delete("/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_key(key_id: str, actor: AnyActor, container: ContainerDep) -> Response:
    """Revoke one of the caller's keys; it stops working immediately.

    Own keys only, admins included: revoking someone else's key is the audited
    ``DELETE /v1/admin/keys/{id}``.
    """
    await container.auth.revoke_key(key_id, actor=actor, own_only=True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/provider-keys", response_model=list[ProviderKeyRead])
async def list_provider_keys(actor: AnyActor, container: ContainerDep) -> list[ProviderKeyRead]:
    """Which providers the caller stored a key for (the keys themselves are never shown)."""
    return [_provider_key(i) for i in await container.provider_keys.list(actor=actor)]


@router.put("/provider-keys/{provider}", response_model=ProviderKeyRead)
async def put_provider_key(
    provider: str, body: ProviderKeyPut, actor: AnyActor, container: ContainerDep
) -> ProviderKeyRead:
    """Store your own provider API key (encrypted at rest); your turns then use it."""
    info = await container.provider_keys.put(actor=actor, provider=provider, api_key=body.api_key)
    return _provider_key(info)


@router.delete("/provider-keys/{provider}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_provider_key(provider: str, actor: AnyActor, container: ContainerDep) -> Response:
    """Forget your provider key; the server's key is used again."""
    await container.provider_keys.delete(actor=actor, provider=provider)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
