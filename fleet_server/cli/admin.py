"""``clawfleet-server admin …``: dashboard accounts (create, set-password, list, disable, enable, unlock).

Every change is written to the audit log with the actor ``cli:<os user>``. Passwords are read from
a hidden prompt (asked twice) or, with ``--password-stdin``, from the first line of stdin; they
are never printed, logged or passed on the command line.
"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import typer

from fleet_server.auth import lockout
from fleet_server.auth.accounts import (
    MIN_PASSWORD_LENGTH,
    ROLES,
    AuthError,
    create_user,
    ensure_first_admin,
    list_users,
    normalize_username,
    set_disabled,
    set_password,
)
from fleet_server.cli.options import PLAIN_HELP, DataDirOpt, DbUrlOpt, default_data_dir, fail
from fleet_server.store import audit
from shared.private_files import open_private

admin_app = typer.Typer(help="Dashboard accounts: create users, reset passwords, disable.", no_args_is_help=True,
                        **PLAIN_HELP)


PasswordStdinOpt = Annotated[bool, typer.Option("--password-stdin",
                             help="read the password from the first line of stdin instead of prompting")]


def _open(data_dir: Path | None, database_url: str | None) -> None:
    from fleet_server.store.db import open_database

    open_database(data_dir or default_data_dir(), database_url)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            fail("no password on stdin")
        return password
    return typer.prompt(f"Password (at least {MIN_PASSWORD_LENGTH} characters)", hide_input=True,
                        confirmation_prompt=True)


def _when(ts_ms: int | None) -> str:
    if ts_ms is None:
        return "never"
    return datetime.fromtimestamp(ts_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


@admin_app.command("create")
def admin_create(
    username: Annotated[str, typer.Argument(help="login name: a-z, 0-9, '.', '_', '-'")],
    role: Annotated[str | None, typer.Option(help=f"one of: {', '.join(ROLES)} (viewers are read-only); "
                                         "default: admin for the first account, viewer after that")] = None,
    password_stdin: PasswordStdinOpt = False,
    data_dir: DataDirOpt = None,
    database_url: DbUrlOpt = None,
) -> None:
    """Create a dashboard user; asks for the password twice (or reads it from stdin)."""
    if role is not None and role not in ROLES:
        fail(f"role must be one of {', '.join(ROLES)}")
    _open(data_dir, database_url)
    if role is None:
        role = "viewer" if list_users() else "admin"
    password = _read_password(password_stdin)
    try:
        user = create_user(username, password, role=role)
    except AuthError as exc:
        fail(str(exc))
    audit.record(audit.cli_actor(), "user.create", target=user.username, detail=f"role {user.role}")
    typer.echo(f"user {user.username} created ({user.role})")


@admin_app.command("set-password")
def admin_set_password(
    username: Annotated[str, typer.Argument(help="the user")],
    password_stdin: PasswordStdinOpt = False,
    data_dir: DataDirOpt = None,
    database_url: DbUrlOpt = None,
) -> None:
    """Set a user's password; their open sessions end."""
    _open(data_dir, database_url)
    password = _read_password(password_stdin)
    try:
        user = set_password(username, password)
    except AuthError as exc:
        fail(str(exc))
    audit.record(audit.cli_actor(), "user.set_password", target=user.username)
    typer.echo(f"password of {user.username} changed")


@admin_app.command("list")
def admin_list(data_dir: DataDirOpt = None, database_url: DbUrlOpt = None) -> None:
    """List users: name, role, state, last login."""
    _open(data_dir, database_url)
    users = list_users()
    if not users:
        typer.echo("no users; `clawfleet-server run` creates 'admin' on first start")
    for u in users:
        state = "disabled" if u.disabled else "active"
        typer.echo(f"{u.username:24} {u.role:7} {state:9} last login {_when(u.last_login_ms)}")


def _set_disabled(username: str, disabled: bool, data_dir: Path | None, database_url: str | None) -> None:
    _open(data_dir, database_url)
    try:
        user = set_disabled(username, disabled)
    except AuthError as exc:
        fail(str(exc))
    word = "disable" if disabled else "enable"
    audit.record(audit.cli_actor(), f"user.{word}", target=user.username)
    typer.echo(f"user {user.username} {word}d")


@admin_app.command("disable")
def admin_disable(username: Annotated[str, typer.Argument(help="the user")], data_dir: DataDirOpt = None,
                  database_url: DbUrlOpt = None) -> None:
    """Disable a user: no more logins, open sessions end."""
    _set_disabled(username, True, data_dir, database_url)


@admin_app.command("enable")
def admin_enable(username: Annotated[str, typer.Argument(help="the user")], data_dir: DataDirOpt = None,
                 database_url: DbUrlOpt = None) -> None:
    """Re-enable a disabled user."""
    _set_disabled(username, False, data_dir, database_url)


@admin_app.command("unlock")
def admin_unlock(
    username: Annotated[str | None, typer.Argument(help="the user whose failed logins to forget (every address)")]
    = None,
    address: Annotated[str | None, typer.Option(help="also (or only) forget the failed logins from this client "
                       "address, e.g. a shared NAT locked by a password spray")] = None,
    data_dir: DataDirOpt = None,
    database_url: DbUrlOpt = None,
) -> None:
    """Clear failed-login locks at once (the running server sees it at the next attempt)."""
    if not username and not address:
        fail("name a user (clawfleet-server admin unlock NAME) or an --address")
    _open(data_dir, database_url)
    name = None
    if username:
        try:
            name = normalize_username(username)
        except AuthError as exc:
            fail(str(exc))
    n = lockout.clear(name, None) if name else 0
    if address:
        n += lockout.clear(None, address)
    what = " and ".join(x for x in (name, f"address {address}" if address else None) if x)
    if not n:
        typer.echo(f"{what} has no failed-login lock")
        return
    audit.record(audit.cli_actor(), "user.unlock", target=name or address or "",
                 detail=f"cleared {n} failed-login record{'s' if n != 1 else ''}"
                 + (f"; address {address}" if address and name else ""))
    typer.echo(f"cleared {n} failed-login lock{'s' if n != 1 else ''} of {what}; logins are allowed again")


def first_run_admin(password_file: Path | None = None) -> None:
    """If the (open) database has no user, create ``admin`` and show its password once.

    Without ``password_file`` the password is printed to stdout with ``typer.echo`` (the terminal,
    never ``logging``). With it, the password goes into that file (created or replaced, mode 0600)
    and stdout only says where it is. Call after the database is open and before the dashboard
    starts.

    Raises:
        typer.Exit: the password file cannot be written (checked before the account is created).
    """
    if list_users():
        return
    out = None
    if password_file is not None:
        try:
            out = open_private(password_file)
        except OSError as exc:
            fail(f"cannot write the first admin password to {password_file}: {exc.strerror or exc}")
    try:
        password = ensure_first_admin()
        if password is None:
            return
        if out is not None:
            out.write(password + "\n")
    finally:
        if out is not None:
            out.close()
    detail = "role admin; first run" + ("; password written to a file" if out is not None else "")
    audit.record(audit.cli_actor(), "user.create", target="admin", detail=detail)
    bar = "=" * 72
    if out is not None:
        typer.echo(f"\n{bar}\n  First run: created the dashboard user 'admin' (role admin).\n"
                   f"  Its password is in {password_file} (mode 0600); delete the file once you have it.\n"
                   f"  Change it with: clawfleet-server admin set-password admin\n{bar}\n")
        return
    typer.echo(f"\n{bar}\n  First run: created the dashboard user 'admin' (role admin).\n"
               f"  password: {password}\n"
               "  This is shown ONCE. Change it with: clawfleet-server admin set-password admin\n"
               f"{bar}\n")
