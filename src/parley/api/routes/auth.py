"""Login, token refresh, logout and the first-run signal."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from parley.api.deps import ContainerDep
from parley.api.openapi import problems
from parley.api.schemas.auth import (
    LoginRequest,
    LogoutRequest,
    RefreshRequest,
    SetupRead,
    TokenPairRead,
)
from parley.api.security import AnyActor, enforce_rate
from parley.services.auth import TokenPair, normalize_email

router = APIRouter(prefix="/v1/auth", tags=["auth"])


def _pair(pair: TokenPair) -> TokenPairRead:
    return TokenPairRead(
        access_token=pair.access_token,
        refresh_token=pair.refresh_token,
        token_type=pair.token_type,
        expires_in=pair.expires_in,
    )


@router.post("/login", response_model=TokenPairRead, responses=problems(401, 429))
async def login(body: LoginRequest, request: Request, container: ContainerDep) -> TokenPairRead:
    """Exchange email + password for an access token and a refresh token.

    Counted per email and per client IP (``auth`` class); repeated failures lock the
    account for a while (429 ``account_locked``).
    """
    await enforce_rate(request, container, "auth", f"email:{normalize_email(body.email)}")
    return _pair(await container.auth.login(email=body.email, password=body.password))


@router.post("/refresh", response_model=TokenPairRead, responses=problems(401, 429))
async def refresh(body: RefreshRequest, request: Request, container: ContainerDep) -> TokenPairRead:
    """Rotate a refresh token: the old one is spent; replaying it revokes the login."""
    # Counted per client IP: a refresh token changes at every rotation, so it is no identity.
    await enforce_rate(request, container, "auth")
    return _pair(await container.auth.refresh(refresh_token=body.refresh_token))


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(
    actor: AnyActor, container: ContainerDep, body: LogoutRequest | None = None
) -> Response:
    """End the current login: its refresh token and access tokens stop working."""
    await container.auth.logout(actor=actor, refresh_token=body.refresh_token if body else None)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/setup", response_model=SetupRead, responses=problems(429))
async def setup(request: Request, container: ContainerDep) -> SetupRead:
    """Public: ``needs_setup`` is true while no account has a password yet.

    Then the only way in is an API key (the bootstrap key ``parley serve`` printed at first
    start), so the web page offers the key first. Nothing else is revealed.
    """
    # Public, so counted per client IP; after setup the answer costs no query at all.
    await enforce_rate(request, container, "read")
    return SetupRead(needs_setup=await container.auth.needs_setup())
