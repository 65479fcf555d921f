"""Admin endpoints: users, keys and the audit log (admin role + ``admin`` scope)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response, status

from parley.api.audit import audited, path_param, result_attr
from parley.api.deps import ContainerDep, PageDep
from parley.api.openapi import problems
from parley.api.schemas.auth import (
    AuditList,
    AuditRead,
    UserCreate,
    UserList,
    UserRead,
    UserUpdate,
)
from parley.api.security import AdminActor
from parley.db.models import UserRow
from parley.services.accounts import UserChange
from parley.services.audit import AuditFilter

router = APIRouter(prefix="/v1/admin", tags=["admin"])


def user_read(row: UserRow) -> UserRead:
    """A user as shown (never the password hash)."""
    return UserRead(
        id=row.id,
        email=row.email,
        role=row.role,
        disabled=row.disabled,
        has_password=row.password_hash is not None,
        created_at=_utc(row.created_at),
    )


def _utc(value: datetime) -> datetime:
    # SQLite hands stored times back without their (UTC) offset; always answer with it.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    responses=problems(409),
)
@audited(
    "user.create",
    target_type="user",
    target=result_attr("id"),
    detail=lambda _p, r: {"role": r.role},
)
async def create_user(body: UserCreate, actor: AdminActor, container: ContainerDep) -> UserRead:
    """Create a user."""
    row = await container.accounts.create(email=body.email, password=body.password, role=body.role)
    return user_read(row)


@router.get("/users", response_model=UserList)
async def list_users(actor: AdminActor, container: ContainerDep, page: PageDep) -> UserList:
    """Users, oldest first."""
    result = await container.accounts.page(limit=page.limit, cursor=page.cursor)
    return UserList(items=[user_read(u) for u in result.items], next_cursor=result.next_cursor)


@router.get("/users/{user_id}", response_model=UserRead, responses=problems(404))
async def get_user(user_id: str, actor: AdminActor, container: ContainerDep) -> UserRead:
    """One user."""
    return user_read(await container.accounts.get(user_id))


@router.patch("/users/{user_id}", response_model=UserRead, responses=problems(404, 409))
@audited(
    "user.update",
    target_type="user",
    target=path_param("user_id"),
    detail=lambda p, _r: (
        p["body"].model_dump(exclude_defaults=True, exclude={"password"})
        | ({"password": "changed"} if p["body"].password else {})
    ),
)
async def update_user(
    user_id: str, body: UserUpdate, actor: AdminActor, container: ContainerDep
) -> UserRead:
    """Change a user's role, password or disabled state, and/or revoke all their API keys
    (``revoke_keys``); any of these ends their logins."""
    change = UserChange(
        role=body.role,
        password=body.password,
        disabled=body.disabled,
        revoke_keys=body.revoke_keys,
    )
    return user_read(await container.accounts.update(user_id, change, actor=actor))


@router.delete(
    "/users/{user_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(404, 409)
)
@audited("user.delete", target_type="user", target=path_param("user_id"))
async def delete_user(user_id: str, actor: AdminActor, container: ContainerDep) -> Response:
    """Delete a user with their keys and sessions (refused while they own collections)."""
    await container.accounts.delete(user_id, actor=actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.delete("/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(404))
@audited("key.revoke", target_type="api_key", target=path_param("key_id"))
async def revoke_any_key(key_id: str, actor: AdminActor, container: ContainerDep) -> Response:
    """Revoke anyone's API key."""
    await container.auth.revoke_key(key_id, actor=actor)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/audit", response_model=AuditList)
async def list_audit(
    actor: AdminActor,
    container: ContainerDep,
    page: PageDep,
    action: Annotated[
        str | None, Query(max_length=64, description="e.g. user.delete or user.*")
    ] = None,
    actor_id: Annotated[str | None, Query(max_length=32)] = None,
    target_id: Annotated[str | None, Query(max_length=64)] = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> AuditList:
    """Audit records, newest first, filtered by action, actor, target and time."""
    flt = AuditFilter(
        action=action, actor_id=actor_id, target_id=target_id, since=since, until=until
    )
    result = await container.audit.page(flt, limit=page.limit, cursor=page.cursor)
    return AuditList(
        items=[
            AuditRead(
                id=r.id,
                action=r.action,
                actor_id=r.actor_id,
                actor_key_id=r.actor_key_id,
                target_type=r.target_type,
                target_id=r.target_id,
                ip=r.ip,
                request_id=r.request_id,
                detail=r.detail or {},
                created_at=_utc(r.created_at),
            )
            for r in result.items
        ],
        next_cursor=result.next_cursor,
    )
