"""The caller's own account: identity, email and password, usage, API keys, provider keys."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from fastapi import APIRouter, Request, Response, status

from parley.api.audit import audited, result_attr
from parley.api.deps import ContainerDep
from parley.api.openapi import problems
from parley.api.schemas.auth import (
    AccountUsageRead,
    KeyCreate,
    KeyCreated,
    KeyList,
    KeyRead,
    MeRead,
    MeUpdate,
    ProviderKeyPut,
    ProviderKeyRead,
)
from parley.api.security import AnyActor, enforce_rate
from parley.container import Container
from parley.db.models import ApiKeyRow
from parley.domain.auth import Principal
from parley.errors import InvalidInput
from parley.services.accounts import OwnAccountChange
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


async def _me_read(actor: Principal, container: Container, *, email: str | None) -> MeRead:
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
        email=email,
        role=actor.role,
        scopes=sorted(actor.scopes),
        auth=kind,
        key_id=actor.key_id,
        provider_keys=providers,
    )


@router.get("", response_model=MeRead)
async def me(actor: AnyActor, container: ContainerDep) -> MeRead:
    """Who the credential belongs to, its role and scopes."""
    return await _me_read(actor, container, email=actor.email)


def _changed(params: dict[str, Any], _result: Any) -> dict[str, Any]:
    # Which fields changed, and the new email; never a password, old or new.
    body: MeUpdate = params["body"]
    return ({"email": body.email} if body.email is not None else {}) | (
        {"password": "changed"} if body.password else {}
    )


@router.patch("", response_model=MeRead, responses=problems(409))
@audited("user.update_own", target_type="user", target=result_attr("id"), detail=_changed)
async def update_me(
    body: MeUpdate, request: Request, actor: AnyActor, container: ContainerDep
) -> MeRead:
    """Change your own email and/or password.

    ``current_password`` is required once the account has a password (missing: 422
    ``invalid_input``; wrong: 403 ``forbidden``, counted toward the login lockout). A
    passwordless account (the bootstrap admin) sets its first password with its full,
    non-expiring API key. Email taken: 409; password too short: 422. A new password ends
    your other logins (the one making this call stays signed in). Your role cannot be
    changed here.
    """
    # Password checks and hashing are costly: counted like logins, per user and client IP.
    await enforce_rate(request, container, "auth", actor.subject)
    change = OwnAccountChange(
        email=body.email, password=body.password, current_password=body.current_password
    )
    row = await container.accounts.update_own(change, actor=actor)
    return await _me_read(actor, container, email=row.email)


@router.get("/usage", response_model=AccountUsageRead, responses=problems(422))
async def usage(actor: AnyActor, container: ContainerDep) -> AccountUsageRead:
    """Tokens used today and this month (UTC), against the configured quotas."""
    daily, monthly = container.quotas.limits()
    if actor.user_id is None:
        raise InvalidInput("usage is tracked per user account; sign in as a user")
    u = await container.quotas.usage(actor.user_id)
    return AccountUsageRead(
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


@router.post(
    "/keys", status_code=status.HTTP_201_CREATED, response_model=KeyCreated, responses=problems(404)
)
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


@router.delete("/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(404))
async def revoke_key(key_id: str, actor: AnyActor, container: ContainerDep) -> Response:
    """Revoke one of the caller's keys; it stops working immediately.

    Own keys only, admins included: revoking someone else's key is the audited
    ``DELETE /v1/admin/keys/{id}``.
    """
    await container.auth.revoke_key(key_id, actor=actor, own_only=True)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/provider-keys", response_model=list[ProviderKeyRead], responses=problems(422))
async def list_provider_keys(actor: AnyActor, container: ContainerDep) -> list[ProviderKeyRead]:
    """Which providers the caller stored a key for (the keys themselves are never shown)."""
    return [_provider_key(i) for i in await container.provider_keys.list(actor=actor)]


@router.put("/provider-keys/{provider}", response_model=ProviderKeyRead, responses=problems(409))
async def put_provider_key(
    provider: str, body: ProviderKeyPut, actor: AnyActor, container: ContainerDep
) -> ProviderKeyRead:
    """Store your own provider API key (encrypted at rest); your turns then use it."""
    info = await container.provider_keys.put(actor=actor, provider=provider, api_key=body.api_key)
    return _provider_key(info)


@router.delete(
    "/provider-keys/{provider}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(404)
)
async def delete_provider_key(provider: str, actor: AnyActor, container: ContainerDep) -> Response:
    """Forget your provider key; the server's key is used again."""
    await container.provider_keys.delete(actor=actor, provider=provider)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
