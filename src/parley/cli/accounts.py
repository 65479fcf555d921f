"""``parley users …`` and ``parley keys …``: scripted account setup (direct DB access)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from parley.cli.common import err, load_settings, open_container, out, run
from parley.container import Container
from parley.domain.auth import SYSTEM
from parley.errors import ParleyError

T = TypeVar("T")
users_app = typer.Typer(help="Manage user accounts.", no_args_is_help=True, rich_markup_mode=None)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True, rich_markup_mode=None)
console = out


def _run(fn: Callable[[Container], Awaitable[T]], *, read_only: bool = False) -> T:
    settings = load_settings()

    async def go() -> T:
        async with open_container(settings, read_only=read_only) as container:
            return await fn(container)

    return run(go())


@users_app.command("create")
def create_user(
    email: Annotated[str, typer.Option(help="Login email.")],
    password: Annotated[
        str | None,
        typer.Option(help="The password; asked for (hidden, twice) when omitted."),
    ] = None,
    admin: Annotated[bool, typer.Option("--admin", help="Give the admin role.")] = False,
) -> None:
    """Create a user (--admin for an admin)."""
    if password is None:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)

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
    for uid, mail, role, disabled in _run(run, read_only=True):
        table.add_row(uid, escape(mail), role, "yes" if disabled else "")
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
