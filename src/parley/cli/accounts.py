"""``parley users …`` and ``parley keys …``: scripted account setup (direct DB access)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from parley.container import Container
from parley.domain.auth import SYSTEM
from parley.errors import ParleyError
from parley.logging import configure_logging
from parley.settings import Settings

T = TypeVar("T")
users_app = typer.Typer(help="Manage user accounts.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


async def _with_container(fn: Callable[[Container], Awaitable[T]]) -> T:
    settings = Settings()
    configure_logging(level="warning", json=False, cache=False)
    container = Container.build(settings)
    try:
        await container.prepare_database()
        return await fn(container)
    finally:
        await container.aclose()


def _run(fn: Callable[[Container], Awaitable[T]]) -> T:
    try:
        return asyncio.run(_with_container(fn))
    except ParleyError as exc:
        err.print(f"[red]error[/red] ({exc.code}): {exc.detail}")
        raise typer.Exit(code=1) from None


@users_app.command("create")
def create_user(
    email: Annotated[str, typer.Option(help="Login email.")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True, hide_input=True, confirmation_prompt=True, help="Prompted if omitted."
        ),
    ],
    admin: Annotated[bool, typer.Option("--admin", help="Give the admin role.")] = False,
) -> None:
    """Create a user (``--admin`` for the first admin)."""

    async def run(c: Container) -> tuple[str, str]:
        row = await c.accounts.create(
            email=email, password=password, role="admin" if admin else "member"
        )
        return row.id, row.email

    user_id, stored = _run(run)
    console.print(f"created {'admin' if admin else 'member'} {stored} (id {user_id})")


@users_app.command("list")
def list_users() -> None:
    """List users."""

    async def run(c: Container) -> list[tuple[str, str, str, bool]]:
        page = await c.accounts.page(limit=200, cursor=None)
        return [(u.id, u.email, u.role, u.disabled) for u in page.items]

    table = Table("id", "email", "role", "disabled")
    for uid, mail, role, disabled in _run(run):
        table.add_row(uid, mail, role, "yes" if disabled else "")
    console.print(table)


@keys_app.command("create")
def create_key(
    email: Annotated[
        str | None,
        typer.Option(help="Whose key (default: the only admin, if there is exactly one)."),
    ] = None,
    name: Annotated[str, typer.Option(help="A label for the key.")] = "cli",
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope", help="chat, ingest or admin; repeat. Default: all the role allows."
        ),
    ] = None,
    expires_in_days: Annotated[int | None, typer.Option(min=1, help="Expiry in days.")] = None,
) -> None:
    """Create an API key and print it once."""

    async def run(c: Container) -> str:
        if email is not None:
            user = await c.accounts.by_email(email)
        else:
            admins = [
                u
                for u in (await c.accounts.page(limit=200, cursor=None)).items
                if u.role == "admin" and not u.disabled
            ]
            if len(admins) != 1:
                raise ParleyError("say whose key it is with --email")
            user = admins[0]
        expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
        new = await c.auth.create_key(
            actor=SYSTEM, user_id=user.id, name=name, scopes=scope, expires_at=expires
        )
        return new.secret

    key = _run(run)
    err.print("API key (shown only now; send it as 'Authorization: Bearer <key>'):")
    console.print(key, soft_wrap=True)
