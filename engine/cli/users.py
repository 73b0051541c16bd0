"""`journeyman users`: the dashboard's users.

    journeyman users create NAME [--role viewer|editor] [--password-stdin] [--db URL]
    journeyman users list [--db URL]

The password is asked at a prompt (twice), or read from the first line of stdin with
`--password-stdin` (for scripts); only scrypt's salted hash of it is stored.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from engine.cli.common import EXIT_INVALID, DbOpt, err, open_store, print_rows
from engine.store import DEFAULT_URL

users = typer.Typer(help="Dashboard users (viewer or editor).", no_args_is_help=True)

MIN_PASSWORD = 8


@users.command("create")
def users_create(
    name: Annotated[str, typer.Argument(help="The user's login name.")],
    role: Annotated[str, typer.Option(help="viewer (reads) or editor (also retries "
                                           "parked failures).")] = "viewer",
    password_stdin: Annotated[bool, typer.Option(
        "--password-stdin", help="Read the password from stdin's first line.")] = False,
    db: DbOpt = DEFAULT_URL,
) -> None:
    """Create a dashboard user; the password is prompted for (or read from stdin)."""
    from engine.api.dashboard.auth import ROLES, hash_password
    from engine.store import DuplicateUserName

    if role not in ROLES:
        err.print(f"--role must be one of {', '.join(ROLES)}, not {role!r}", markup=False)
        raise typer.Exit(2)
    if not name.strip() or len(name) > 255 or "\x00" in name:
        err.print("a user name is 1 to 255 characters", markup=False)
        raise typer.Exit(2)
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    if len(password) < MIN_PASSWORD:
        err.print(f"the password needs at least {MIN_PASSWORD} characters", markup=False)
        raise typer.Exit(EXIT_INVALID)
    store = open_store(db)
    try:
        store.create_user(name, hash_password(password), role)
    except DuplicateUserName as exc:
        err.print(str(exc), markup=False)
        raise typer.Exit(EXIT_INVALID) from None
    finally:
        store.close()
    err.print(f"created {role} {name!r}", markup=False)


@users.command("list")
def users_list(db: DbOpt = DEFAULT_URL) -> None:
    """List the dashboard's users and their roles."""
    store = open_store(db, existing=True)
    try:
        found = store.list_users()
    finally:
        store.close()
    print_rows(("name", "role", "created"),
               [(user.name, user.role,
                 user.created_at.isoformat(timespec="seconds") if user.created_at else "")
                for user in found])
